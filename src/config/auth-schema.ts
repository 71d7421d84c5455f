import { z } from 'zod';
import {
  API_KEY_FIELDS,
  AUTH_TYPE,
  AUTH_VARIANTS,
  BASIC_FIELDS,
  BEARER_FIELDS,
  HMAC_FIELDS,
  OAUTH2_FIELDS,
  TOKEN_HEADER_FIELDS,
} from './auth-fields.js';
import { durationMs } from './duration.js';
import { headerName, templateString } from './schema-parts.js';

/** `request.auth`: how a delivery request authenticates (docs/connections.md, "Auth"). */

/** Sends an OAuth2 token in a header; `false` when the token goes elsewhere (`{{auth.accessToken}}`). */
const tokenPlacement = z.union([
  z.literal(false),
  z
    .object({
      name: headerName.default('Authorization').meta(TOKEN_HEADER_FIELDS.name),
      prefix: z.string().max(64).default('Bearer ').meta(TOKEN_HEADER_FIELDS.prefix),
    })
    .strict(),
]);

export const oauth2Schema = z
  .object({
    type: z.literal('oauth2_client_credentials').meta(AUTH_TYPE),
    /** Token endpoint (a template, e.g. with a per-tenant subdomain from settings). */
    tokenUrl: templateString.meta(OAUTH2_FIELDS.tokenUrl),
    clientId: templateString.meta(OAUTH2_FIELDS.clientId),
    clientSecret: templateString.meta(OAUTH2_FIELDS.clientSecret),
    scope: templateString.optional().meta(OAUTH2_FIELDS.scope),
    audience: templateString.optional().meta(OAUTH2_FIELDS.audience),
    /** Extra token request parameters, e.g. SFMC's `account_id`. */
    params: z.record(z.string(), templateString).default({}).meta(OAUTH2_FIELDS.params),
    /** How the token request body is encoded. */
    tokenRequest: z.enum(['form', 'json']).default('form').meta(OAUTH2_FIELDS.tokenRequest),
    /** Client credentials in the body (`client_id`/`client_secret`) or as HTTP Basic. */
    clientAuth: z.enum(['body', 'basic']).default('body').meta(OAUTH2_FIELDS.clientAuth),
    /** Where the delivery request carries the token. */
    header: tokenPlacement.default({ name: 'Authorization', prefix: 'Bearer ' }).meta(OAUTH2_FIELDS.header),
    /** Refresh this long before the token expires, so no request goes out with a dying token. */
    refreshBefore: durationMs.default(60_000).meta(OAUTH2_FIELDS.refreshBefore),
    /** Used when the token response has no `expires_in`. */
    defaultTtl: durationMs.default(3_600_000).meta(OAUTH2_FIELDS.defaultTtl),
  })
  .strict()
  .meta(AUTH_VARIANTS.oauth2_client_credentials);
export type OAuth2Auth = z.infer<typeof oauth2Schema>;

export const hmacSchema = z
  .object({
    type: z.literal('hmac').meta(AUTH_TYPE),
    /**
     * `standard_webhooks`: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over
     * `id.timestamp.body` with a `whsec_` base64 secret. `custom`: the header and payload below.
     */
    scheme: z.enum(['standard_webhooks', 'custom']).default('custom').meta(HMAC_FIELDS.scheme),
    secret: templateString.meta(HMAC_FIELDS.secret),
    algorithm: z.enum(['sha256', 'sha1', 'sha512']).default('sha256').meta(HMAC_FIELDS.algorithm),
    /** custom: header that carries the signature. */
    header: headerName.default('X-Signature').meta(HMAC_FIELDS.header),
    /** custom: what is signed; `{{body}}`, `{{timestamp}}`, `{{id}}`, `{{method}}`, `{{url}}`, `{{path}}`. */
    payload: templateString.default('{{body}}').meta(HMAC_FIELDS.payload),
    encoding: z.enum(['hex', 'base64']).default('hex').meta(HMAC_FIELDS.encoding),
    /** custom: put before the signature, e.g. `sha256=`. */
    prefix: z.string().max(64).default('').meta(HMAC_FIELDS.prefix),
    /** custom: also send the timestamp (unix seconds) in this header. */
    timestampHeader: headerName.optional().meta(HMAC_FIELDS.timestampHeader),
  })
  .strict()
  .meta(AUTH_VARIANTS.hmac);
export type HmacAuth = z.infer<typeof hmacSchema>;

export const authSchema = z.discriminatedUnion('type', [
  z
    .object({ type: z.literal('none').meta(AUTH_TYPE) })
    .strict()
    .meta(AUTH_VARIANTS.none),
  z
    .object({
      type: z.literal('api_key').meta(AUTH_TYPE),
      header: headerName.meta(API_KEY_FIELDS.header),
      value: templateString.meta(API_KEY_FIELDS.value),
      prefix: z.string().max(64).optional().meta(API_KEY_FIELDS.prefix),
    })
    .strict()
    .meta(AUTH_VARIANTS.api_key),
  z
    .object({
      type: z.literal('basic').meta(AUTH_TYPE),
      username: templateString.meta(BASIC_FIELDS.username),
      password: templateString.meta(BASIC_FIELDS.password),
    })
    .strict()
    .meta(AUTH_VARIANTS.basic),
  z
    .object({ type: z.literal('bearer').meta(AUTH_TYPE), token: templateString.meta(BEARER_FIELDS.token) })
    .strict()
    .meta(AUTH_VARIANTS.bearer),
  oauth2Schema,
  hmacSchema,
]);
export type Auth = z.infer<typeof authSchema>;
