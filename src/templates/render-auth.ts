import { customSignature, standardWebhookHeaders } from '../auth/hmac.js';
import type { RenderedRequest } from '../domain/delivery.js';
import type { CompiledAuth, CompiledHmac, CompiledOAuth2 } from './compile-auth.js';
import type { CompiledField } from './compile-body.js';
import type { SecretSource } from './context.js';
import { formEncode } from './encoding.js';
import { TemplateProblem } from './problem.js';
import { checkedHeader, checkedUrl, startRendering, type Rendering, type Report } from './render-core.js';
import type { RenderOptions } from './render-state.js';

/** Sets the auth header of the delivery request; the token comes from the caller for OAuth2. */
export function applyAuth(
  auth: CompiledAuth,
  r: Rendering,
  headers: Record<string, string>,
  accessToken: string | undefined,
): void {
  const setAuth = (name: string, value: string, ...raw: string[]) => {
    headers[name] = value;
    for (const secret of [value, ...raw]) r.sensitive.add(secret);
  };
  switch (auth.type) {
    case 'api_key': {
      const key = r.attempt(auth.value.field, () => r.header(auth.value));
      if (key !== undefined) setAuth(auth.header, `${auth.prefix}${key}`, key);
      return;
    }
    case 'bearer': {
      const token = r.attempt(auth.token.field, () => r.header(auth.token));
      if (token !== undefined) setAuth('authorization', `Bearer ${token}`, token);
      return;
    }
    case 'basic': {
      const username = r.attempt(auth.username.field, () => {
        const value = r.header(auth.username);
        // RFC 7617: the first colon ends the user-id, so one inside it would shift the password.
        if (value.includes(':')) throw new TemplateProblem('the username must not contain ":"');
        return value;
      });
      const password = r.attempt(auth.password.field, () => r.header(auth.password));
      if (username !== undefined && password !== undefined) {
        const credentials = Buffer.from(`${username}:${password}`, 'utf8').toString('base64');
        setAuth('authorization', `Basic ${credentials}`, credentials, password);
      }
      return;
    }
    case 'oauth2_client_credentials': {
      if (accessToken === undefined || auth.header === false) return;
      const { name, prefix } = auth.header;
      // The token comes from the CRM's token endpoint: it must not be able to inject a header either.
      const token = r.attempt('request.auth', () => checkedHeader(accessToken, 'the access token'));
      if (token !== undefined) setAuth(name, `${prefix}${token}`, token);
      return;
    }
    case 'none':
    case 'hmac':
      return; // hmac signs once the body is rendered: see signRequest
  }
}

type Signable = Pick<RenderedRequest, 'method' | 'url' | 'headers' | 'body'>;

/** Adds the HMAC signature headers; runs last, over the body exactly as it will be sent. */
export function signRequest(auth: CompiledHmac, r: Rendering, request: Signable, id: string): void {
  const secret = r.attempt(auth.secret.field, () => r.text(auth.secret));
  if (secret === undefined) return;
  r.sensitive.add(secret);
  const timestamp = Math.floor(r.state.now / 1000);
  const body = request.body ?? '';
  if (auth.scheme === 'standard_webhooks') {
    const signed = r.attempt(auth.secret.field, () => {
      checkedHeader(id, 'the unsubscribe id');
      return standardWebhookHeaders({ secret, id, timestamp, body });
    });
    if (signed) Object.assign(request.headers, signed);
    return;
  }
  const data = {
    body,
    timestamp,
    id,
    method: request.method,
    url: request.url,
    path: requestTarget(request.url),
  };
  const payload = r.attempt(auth.payload.field, () => auth.payload.template.render(data, r.state));
  if (payload === undefined) return;
  const { algorithm, encoding, prefix } = auth;
  const signature = r.attempt(auth.secret.field, () =>
    customSignature({ algorithm, key: secret, payload, encoding, prefix }),
  );
  if (signature === undefined) return;
  request.headers[auth.header] = signature;
  if (auth.timestampHeader) request.headers[auth.timestampHeader] = String(timestamp);
}

/** Path and query as in the HTTP request line (`/v1/x?a=b`), which is what receivers see. */
function requestTarget(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  } catch {
    return ''; // the URL already failed and was reported under request.url
  }
}

/**
 * The OAuth2 client-credentials token request (RFC 6749 4.4): POST to the token URL with
 * `grant_type=client_credentials`, the client credentials in the body or as HTTP Basic, and the
 * optional scope, audience and extra parameters (left out when they render empty).
 */
export function tokenRequestWith(
  auth: CompiledOAuth2,
  data: object,
  secrets: SecretSource,
  report: Report,
  options?: RenderOptions,
): RenderedRequest {
  const r = startRendering(data, secrets, options, report);
  const url = r.attempt(auth.tokenUrl.field, () => checkedUrl(r.text(auth.tokenUrl))) ?? '';
  const headers: Record<string, string> = {
    'content-type': auth.tokenRequest === 'json' ? 'application/json' : 'application/x-www-form-urlencoded',
    accept: 'application/json',
  };
  const fields: { name: string; value: string; field: string }[] = [
    { name: 'grant_type', value: 'client_credentials', field: 'request.auth' },
  ];
  const clientId = r.attempt(auth.clientId.field, () => r.text(auth.clientId));
  const clientSecret = r.attempt(auth.clientSecret.field, () => r.text(auth.clientSecret));
  if (clientSecret !== undefined) r.sensitive.add(clientSecret);
  if (clientId !== undefined && clientSecret !== undefined) {
    if (auth.clientAuth === 'basic') {
      // RFC 6749 2.3.1: each part is form-urlencoded before joining, so a ":" in the id stays in the id.
      const id = r.attempt(auth.clientId.field, () => formEncode(clientId, 'client id'));
      const key = r.attempt(auth.clientSecret.field, () => formEncode(clientSecret, 'client secret'));
      if (id !== undefined && key !== undefined) {
        const credentials = Buffer.from(`${id}:${key}`, 'utf8').toString('base64');
        headers.authorization = `Basic ${credentials}`;
        r.sensitive.add(credentials).add(headers.authorization).add(key);
      }
    } else {
      fields.push({ name: 'client_id', value: clientId, field: auth.clientId.field });
      fields.push({ name: 'client_secret', value: clientSecret, field: auth.clientSecret.field });
    }
  }
  const optional: [string, CompiledField | undefined][] = [
    ['scope', auth.scope],
    ['audience', auth.audience],
    ...auth.params.map(({ name, value }) => [name, value] as [string, CompiledField]),
  ];
  for (const [name, compiled] of optional) {
    if (!compiled) continue;
    const value = r.attempt(compiled.field, () => r.text(compiled));
    if (value) fields.push({ name, value, field: compiled.field });
  }
  let body: string;
  if (auth.tokenRequest === 'json') {
    body = JSON.stringify(Object.fromEntries(fields.map(({ name, value }) => [name, value])));
  } else {
    const pairs = fields.map(({ name, value, field }) =>
      r.attempt(field, () => `${formEncode(name, 'parameter name')}=${formEncode(value)}`),
    );
    body = pairs.filter((pair) => pair !== undefined).join('&');
  }
  return { method: 'POST', url, headers, body, secrets: r.secrets() };
}
