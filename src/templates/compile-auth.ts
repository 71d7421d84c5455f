import type { HmacAuth, OAuth2Auth, RequestTemplate } from '../config/connection-schema.js';
import type { ConfigIssue } from '../errors.js';
import { hasHeaderUnsafeChar } from './chars.js';
import type { Compile, CompiledField } from './compile-body.js';

export type CompiledOAuth2 = {
  readonly type: 'oauth2_client_credentials';
  readonly tokenUrl: CompiledField;
  readonly clientId: CompiledField;
  readonly clientSecret: CompiledField;
  readonly scope?: CompiledField;
  readonly audience?: CompiledField;
  readonly params: readonly { readonly name: string; readonly value: CompiledField }[];
  readonly tokenRequest: OAuth2Auth['tokenRequest'];
  readonly clientAuth: OAuth2Auth['clientAuth'];
  /** Lowercased name; `false` when templates place the token themselves (`{{auth.accessToken}}`). */
  readonly header: false | { readonly name: string; readonly prefix: string };
};

export type CompiledHmac = {
  readonly type: 'hmac';
  readonly scheme: HmacAuth['scheme'];
  readonly secret: CompiledField;
  readonly algorithm: HmacAuth['algorithm'];
  readonly encoding: HmacAuth['encoding'];
  readonly prefix: string;
  /** Lowercased. */
  readonly header: string;
  /** Rendered over `{ body, timestamp, id, method, url, path }`, not the unsubscribe. */
  readonly payload: CompiledField;
  readonly timestampHeader?: string;
};

export type CompiledAuth =
  | { readonly type: 'none' }
  | {
      readonly type: 'api_key';
      readonly header: string;
      readonly prefix: string;
      readonly value: CompiledField;
    }
  | { readonly type: 'basic'; readonly username: CompiledField; readonly password: CompiledField }
  | { readonly type: 'bearer'; readonly token: CompiledField }
  | CompiledOAuth2
  | CompiledHmac;

export const STANDARD_WEBHOOK_HEADERS = ['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const;

/** Parameters the token request sets itself; a `params` entry may not replace them. */
const TOKEN_FIELDS = new Set(['grant_type', 'client_id', 'client_secret', 'scope', 'audience']);

/** Headers `request.auth` sets, lowercased, so `request.headers` cannot set them a second time. */
export function authHeaderNames(auth: RequestTemplate['auth']): string[] {
  switch (auth.type) {
    case 'none':
      return [];
    case 'api_key':
      return [auth.header.toLowerCase()];
    case 'basic':
    case 'bearer':
      return ['authorization'];
    case 'oauth2_client_credentials':
      return auth.header === false ? [] : [auth.header.name.toLowerCase()];
    case 'hmac':
      if (auth.scheme === 'standard_webhooks') return [...STANDARD_WEBHOOK_HEADERS];
      return [auth.header, ...(auth.timestampHeader ? [auth.timestampHeader] : [])].map((h) =>
        h.toLowerCase(),
      );
  }
}

export function compileAuth(
  auth: RequestTemplate['auth'],
  compile: Compile,
  issues: ConfigIssue[],
): CompiledAuth | undefined {
  const checkPrefix = (prefix: string, field: string) => {
    if (hasHeaderUnsafeChar(prefix)) issues.push({ field, reason: 'must not contain control characters' });
  };
  // Headers are a plain object, where this name would set the prototype instead of a key.
  const checkName = (name: string, field: string) => {
    if (name === '__proto__') issues.push({ field, reason: 'not a usable header name' });
  };
  switch (auth.type) {
    case 'none':
      return auth;
    case 'api_key': {
      const prefix = auth.prefix ?? '';
      checkPrefix(prefix, 'request.auth.prefix');
      checkName(auth.header, 'request.auth.header');
      const value = compile(auth.value, 'header', 'request.auth.value');
      return value && { type: 'api_key', header: auth.header.toLowerCase(), prefix, value };
    }
    case 'basic': {
      // The auth header is built from these, so they are plain text, checked after rendering.
      const username = compile(auth.username, 'header', 'request.auth.username');
      const password = compile(auth.password, 'header', 'request.auth.password');
      return username && password && { type: 'basic', username, password };
    }
    case 'bearer': {
      const token = compile(auth.token, 'header', 'request.auth.token');
      return token && { type: 'bearer', token };
    }
    case 'oauth2_client_credentials':
      return compileOAuth2(auth, compile, issues, checkPrefix, checkName);
    case 'hmac':
      return compileHmac(auth, compile, issues, checkPrefix, checkName);
  }
}

type Check = (value: string, field: string) => void;

function compileOAuth2(
  auth: OAuth2Auth,
  compile: Compile,
  issues: ConfigIssue[],
  checkPrefix: Check,
  checkName: Check,
): CompiledOAuth2 | undefined {
  // The token request happens before there is a token, so its fields cannot use one.
  const noToken = { accessToken: false };
  // Plain text: the values are form- or JSON-encoded whole once rendered.
  const plain = (source: string, field: string) => compile(source, 'plain', field, noToken);
  const tokenUrl = compile(auth.tokenUrl, 'url', 'request.auth.tokenUrl', noToken);
  const clientId = plain(auth.clientId, 'request.auth.clientId');
  const clientSecret = plain(auth.clientSecret, 'request.auth.clientSecret');
  const scope = auth.scope === undefined ? undefined : plain(auth.scope, 'request.auth.scope');
  const audience = auth.audience === undefined ? undefined : plain(auth.audience, 'request.auth.audience');
  const params: { name: string; value: CompiledField }[] = [];
  let failed = (auth.scope !== undefined && !scope) || (auth.audience !== undefined && !audience);
  for (const [name, source] of Object.entries(auth.params)) {
    const field = `request.auth.params.${name}`;
    if (TOKEN_FIELDS.has(name)) {
      issues.push({ field, reason: `${name} is set by the token request itself; remove it from params` });
      failed = true;
      continue;
    }
    const value = plain(source, field);
    if (value) params.push({ name, value });
    else failed = true;
  }
  if (auth.header !== false) {
    checkPrefix(auth.header.prefix, 'request.auth.header.prefix');
    checkName(auth.header.name, 'request.auth.header.name');
  }
  if (failed || !tokenUrl || !clientId || !clientSecret) return undefined;
  return {
    type: 'oauth2_client_credentials',
    tokenUrl,
    clientId,
    clientSecret,
    ...(scope ? { scope } : {}),
    ...(audience ? { audience } : {}),
    params,
    tokenRequest: auth.tokenRequest,
    clientAuth: auth.clientAuth,
    header:
      auth.header === false ? false : { name: auth.header.name.toLowerCase(), prefix: auth.header.prefix },
  };
}

function compileHmac(
  auth: HmacAuth,
  compile: Compile,
  issues: ConfigIssue[],
  checkPrefix: Check,
  checkName: Check,
): CompiledHmac | undefined {
  const secret = compile(auth.secret, 'plain', 'request.auth.secret');
  // The payload sees the request being signed, not the unsubscribe, so settings are out of reach.
  const payload = compile(auth.payload, 'plain', 'request.auth.payload', { settings: [] });
  const custom = auth.scheme === 'custom';
  if (custom) {
    checkPrefix(auth.prefix, 'request.auth.prefix');
    checkName(auth.header, 'request.auth.header');
    if (auth.timestampHeader !== undefined) checkName(auth.timestampHeader, 'request.auth.timestampHeader');
    if (auth.timestampHeader?.toLowerCase() === auth.header.toLowerCase()) {
      issues.push({ field: 'request.auth.timestampHeader', reason: 'same header as request.auth.header' });
      return undefined;
    }
  }
  if (!secret || !payload) return undefined;
  return {
    type: 'hmac',
    scheme: auth.scheme,
    secret,
    algorithm: auth.algorithm,
    encoding: auth.encoding,
    prefix: auth.prefix,
    header: auth.header.toLowerCase(),
    payload,
    ...(custom && auth.timestampHeader ? { timestampHeader: auth.timestampHeader.toLowerCase() } : {}),
  };
}
