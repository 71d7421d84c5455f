import { DURATION, TEMPLATE, type FieldMeta } from './connection-fields.js';

/** What each field of `request.auth` means, for the JSON Schema (see connection-fields.ts). */

export const AUTH_VARIANTS = {
  none: { description: 'No authentication.' },
  api_key: { description: 'A key in a header: <header>: <prefix><value>.' },
  basic: { description: 'HTTP Basic: Authorization: Basic base64(username:password).' },
  bearer: { description: 'Authorization: Bearer <token>.' },
  oauth2_client_credentials: {
    description:
      'OAuth2 client credentials (RFC 6749 4.4): a token is fetched from tokenUrl, cached for every worker, refreshed before it expires and sent with each request.',
  },
  hmac: {
    description:
      'Signs each request with an HMAC over the body as sent: Standard Webhooks headers, or a header of your own.',
  },
} satisfies Record<string, FieldMeta>;

export const AUTH_TYPE = {
  description: 'The kind of authentication: none, api_key, basic, bearer, oauth2_client_credentials or hmac.',
} satisfies FieldMeta;

export const API_KEY_FIELDS = {
  header: {
    description: 'The header that carries the key.',
    examples: ['Api-Key', 'X-API-Key', 'Authorization'],
  },
  value: { description: `The key, ${TEMPLATE}`, examples: ["{{secret 'ACME_API_KEY'}}"] },
  prefix: {
    description: 'Put before the value, as it is (mind the space).',
    examples: ['Klaviyo-API-Key ', 'Token '],
  },
} satisfies Record<string, FieldMeta>;

export const BASIC_FIELDS = {
  username: {
    description: `The user name (no ':'), ${TEMPLATE}`,
    examples: ['anystring', "{{secret 'ACME_USER'}}"],
  },
  password: { description: `The password, ${TEMPLATE}`, examples: ["{{secret 'MAILGUN_API_KEY'}}"] },
} satisfies Record<string, FieldMeta>;

export const BEARER_FIELDS = {
  token: { description: `The bearer token, ${TEMPLATE}`, examples: ["{{secret 'ACME_SENDGRID_KEY'}}"] },
} satisfies Record<string, FieldMeta>;

export const OAUTH2_FIELDS = {
  tokenUrl: {
    description: `The token endpoint, POSTed with grant_type=client_credentials, ${TEMPLATE} No {{auth.accessToken}} here.`,
    examples: ["https://{{setting 'subdomain'}}.auth.marketingcloudapis.com/v2/token"],
  },
  clientId: { description: `The client id, ${TEMPLATE}`, examples: ["{{secret 'SFMC_CLIENT_ID'}}"] },
  clientSecret: {
    description: `The client secret, ${TEMPLATE}`,
    examples: ["{{secret 'SFMC_CLIENT_SECRET'}}"],
  },
  scope: {
    description: 'The scope parameter, left out when it renders empty.',
    examples: ['list_and_subscribers_write'],
  },
  audience: {
    description: 'The audience parameter, left out when it renders empty.',
    examples: ['https://api.example.com'],
  },
  params: {
    description:
      'Extra token request parameters (templates), left out when empty; cannot set grant_type, client_id, client_secret, scope or audience.',
    examples: [{ account_id: "{{setting 'accountId'}}" }],
  },
  tokenRequest: {
    description: 'How the token request body is encoded: form (default) or json.',
    examples: ['form', 'json'],
  },
  clientAuth: {
    description:
      'Where the client credentials go: body (client_id/client_secret, default) or basic (HTTP Basic).',
    examples: ['body', 'basic'],
  },
  header: {
    description:
      'Where the token goes: a header (default Authorization: Bearer <token>), or false to place it with {{auth.accessToken}} in the url, headers or body.',
    examples: [{ name: 'Authorization', prefix: 'Bearer ' }, false],
  },
  refreshBefore: {
    description: `Fetch a new token this long before the current one expires (at half its life if it is shorter). Default 1m. ${DURATION}`,
    examples: ['1m'],
  },
  defaultTtl: {
    description: `How long a token lives when the token response has no expires_in. Default 1h. ${DURATION}`,
    examples: ['1h'],
  },
} satisfies Record<string, FieldMeta>;

export const TOKEN_HEADER_FIELDS = {
  name: {
    description: 'The header that carries the token. Default Authorization.',
    examples: ['Authorization'],
  },
  prefix: {
    description: "Put before the token, as it is. Default 'Bearer '.",
    examples: ['Bearer ', 'Zoho-oauthtoken '],
  },
} satisfies Record<string, FieldMeta>;

export const HMAC_FIELDS = {
  scheme: {
    description:
      'standard_webhooks: webhook-id, webhook-timestamp and webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>. custom (default): header, payload, algorithm, encoding and prefix below.',
    examples: ['custom', 'standard_webhooks'],
  },
  secret: {
    description: `The signing key, ${TEMPLATE} standard_webhooks decodes a whsec_<base64> secret, other text is used as UTF-8 bytes.`,
    examples: ["{{secret 'ACME_SIGNING_SECRET'}}"],
  },
  algorithm: { description: 'custom: the hash: sha256 (default), sha1 or sha512.', examples: ['sha256'] },
  header: {
    description: 'custom: the header that carries the signature. Default X-Signature.',
    examples: ['X-Hub-Signature-256'],
  },
  payload: {
    description:
      'custom: what is signed, a template over {{body}}, {{timestamp}} (unix seconds), {{id}}, {{method}}, {{url}} and {{path}}. Default {{body}}.',
    examples: ['{{body}}', '{{timestamp}}.{{body}}'],
  },
  encoding: {
    description: 'custom: how the digest is written: hex (default) or base64.',
    examples: ['hex', 'base64'],
  },
  prefix: { description: 'custom: put before the digest. Default empty.', examples: ['sha256=', 'v1='] },
  timestampHeader: {
    description: 'custom: also send the signing time (unix seconds) in this header.',
    examples: ['X-Timestamp'],
  },
} satisfies Record<string, FieldMeta>;
