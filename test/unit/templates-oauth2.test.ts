import { describe, expect, it } from 'vitest';
import { connectionSchema, type Connection } from '../../src/config/connection-schema.js';
import type { Unsubscribe } from '../../src/domain/unsubscribe.js';
import { TemplateError } from '../../src/errors.js';
import { redactRequest } from '../../src/templates/redact.js';
import {
  checkTemplates,
  compileConnection,
  referencedSecrets,
  renderRequest,
  renderTokenRequest,
  templateContext,
  type SecretSource,
} from '../../src/templates/render-request.js';

const unsubscribe: Unsubscribe = {
  id: '6f1c7d9e-8a7b-4c2d-9e0f-1a2b3c4d5e6f',
  account: 'acme',
  email: "o'brien+news@example.com",
  receivedAt: '2024-05-01T10:00:00.000Z',
  attributes: {},
};
const CLIENT_SECRET = 'cl1ent s3cret:&+/é';
const TOKEN = 'eyJ.access<token>&"x"';
const secrets: SecretSource = {
  get: (name) => ({ SFMC_ID: 'my client:1', SFMC_SECRET: CLIENT_SECRET })[name],
};

function connection(auth: Record<string, unknown>, request: Record<string, unknown> = {}): Connection {
  return connectionSchema.parse({
    id: 'acme-sfmc',
    account: 'acme',
    name: 'Acme SFMC',
    settings: { subdomain: 'mc123', mid: 5001 },
    request: {
      url: 'https://{{settings.subdomain}}.soap.marketingcloudapis.com/Service.asmx',
      auth: {
        type: 'oauth2_client_credentials',
        tokenUrl: 'https://{{settings.subdomain}}.auth.marketingcloudapis.com/v2/token',
        clientId: "{{secret 'SFMC_ID'}}",
        clientSecret: "{{secret 'SFMC_SECRET'}}",
        ...auth,
      },
      ...request,
    },
  });
}

const context = (conn: Connection) => templateContext(unsubscribe, conn, 1, { sandboxUrl: 'http://x' });
const tokenRequest = (conn: Connection) =>
  renderTokenRequest(compileConnection(conn), context(conn), secrets)!;
const render = (conn: Connection, auth?: { accessToken: string }) =>
  renderRequest(compileConnection(conn), context(conn), secrets, auth);

describe('renderTokenRequest', () => {
  it('form body with client credentials in the body (the defaults)', () => {
    const conn = connection({
      scope: 'email_write list_and_subscribers_write',
      params: { account_id: '{{settings.mid}}' },
    });
    const request = tokenRequest(conn);
    expect(request).toEqual({
      method: 'POST',
      url: 'https://mc123.auth.marketingcloudapis.com/v2/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body:
        'grant_type=client_credentials&client_id=my+client%3A1&client_secret=cl1ent+s3cret%3A%26%2B%2F%C3%A9' +
        '&scope=email_write+list_and_subscribers_write&account_id=5001',
      secrets: expect.arrayContaining([CLIENT_SECRET]),
    });
    const redacted = redactRequest(request);
    expect(redacted.body).toBe(
      'grant_type=client_credentials&client_id=[redacted]&client_secret=[redacted]' +
        '&scope=email_write+list_and_subscribers_write&account_id=5001',
    );
  });

  it('json body, with audience', () => {
    const conn = connection({
      tokenRequest: 'json',
      audience: 'https://api.example/',
      params: { account_id: '{{settings.mid}}' },
    });
    const request = tokenRequest(conn);
    expect(request.headers).toEqual({ 'content-type': 'application/json', accept: 'application/json' });
    expect(JSON.parse(request.body!)).toEqual({
      grant_type: 'client_credentials',
      client_id: 'my client:1',
      client_secret: CLIENT_SECRET,
      audience: 'https://api.example/',
      account_id: '5001',
    });
    expect(redactRequest(request).body).not.toContain('s3cret');
  });

  it('HTTP Basic per RFC 6749 2.3.1: each part form-encoded, then base64', () => {
    const conn = connection({ clientAuth: 'basic', scope: 'a b' });
    const request = tokenRequest(conn);
    const expected = Buffer.from('my+client%3A1:cl1ent+s3cret%3A%26%2B%2F%C3%A9').toString('base64');
    expect(request.headers).toEqual({
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      authorization: `Basic ${expected}`,
    });
    expect(request.body).toBe('grant_type=client_credentials&scope=a+b');
    expect(request.secrets).toEqual(expect.arrayContaining([`Basic ${expected}`, expected, CLIENT_SECRET]));
    expect(redactRequest(request).headers.authorization).toBe('[redacted]');
  });

  it('json body with HTTP Basic leaves the credentials out of the body', () => {
    const request = tokenRequest(connection({ clientAuth: 'basic', tokenRequest: 'json' }));
    expect(request.body).toBe('{"grant_type":"client_credentials"}');
    expect(request.headers.authorization).toMatch(/^Basic /);
  });

  it('leaves out optional parameters that render empty', () => {
    const request = tokenRequest(
      connection({ scope: "{{default campaign ''}}", params: { x: "{{default source ''}}", y: 'kept' } }),
    );
    expect(request.body).toBe(
      'grant_type=client_credentials&client_id=my+client%3A1&client_secret=cl1ent+s3cret%3A%26%2B%2F%C3%A9&y=kept',
    );
  });

  it('is undefined for other auth types', () => {
    const conn = connectionSchema.parse({
      id: 'a',
      account: 'a',
      name: 'a',
      request: { url: 'https://x.example' },
    });
    expect(renderTokenRequest(compileConnection(conn), context(conn), secrets)).toBeUndefined();
  });

  it('names a failing field, without the secret', () => {
    const conn = connection({ clientSecret: "{{secret 'MISSING'}}" });
    let error: unknown;
    try {
      tokenRequest(conn);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(TemplateError);
    expect((error as Error).message).toBe(
      'connection acme-sfmc: request.auth.clientSecret: secret "MISSING" is not set',
    );
  });
});

describe('renderRequest with an OAuth2 token', () => {
  it('puts the token in the default Authorization header, redacted', () => {
    const conn = connection({}, { body: { json: { email: '{{email}}' } } });
    const request = render(conn, { accessToken: 'abc.def' });
    expect(request.headers.authorization).toBe('Bearer abc.def');
    expect(request.secrets).toEqual(expect.arrayContaining(['abc.def', 'Bearer abc.def']));
  });

  it('uses a custom header name and prefix', () => {
    const conn = connection({ header: { name: 'X-Access-Token', prefix: '' } });
    expect(render(conn, { accessToken: 'abc' }).headers).toEqual({ 'x-access-token': 'abc' });
  });

  it('with header: false adds no header and lets {{auth.accessToken}} place it in an XML body', () => {
    const conn = connection(
      { header: false },
      {
        headers: { SOAPAction: 'Update' },
        body: {
          xml: '<s:Envelope><s:Header><fueloauth>{{auth.accessToken}}</fueloauth></s:Header><s:Body><EmailAddress>{{email}}</EmailAddress></s:Body></s:Envelope>',
        },
      },
    );
    const request = render(conn, { accessToken: TOKEN });
    expect(request.headers).toEqual({ soapaction: 'Update', 'content-type': 'text/xml; charset=utf-8' });
    expect(request.body).toBe(
      '<s:Envelope><s:Header><fueloauth>eyJ.access&lt;token&gt;&amp;&quot;x&quot;</fueloauth></s:Header>' +
        '<s:Body><EmailAddress>o&apos;brien+news@example.com</EmailAddress></s:Body></s:Envelope>',
    );
    const redacted = redactRequest(request);
    expect(redacted.body).toBe(
      '<s:Envelope><s:Header><fueloauth>[redacted]</fueloauth></s:Header>' +
        '<s:Body><EmailAddress>o&apos;brien+news@example.com</EmailAddress></s:Body></s:Envelope>',
    );
    expect(JSON.stringify(redacted)).not.toContain('access');
  });

  it('refuses to render an OAuth2 connection without a token', () => {
    const conn = connection({});
    expect(() => render(conn)).toThrow(
      'connection acme-sfmc: request.auth: an oauth2_client_credentials connection renders with an access token; none was given',
    );
  });

  it('refuses a token with a control character in the header', () => {
    expect(() => render(connection({}), { accessToken: 'abc\r\nX-Evil: 1' })).toThrow(TemplateError);
  });
});

describe('checking OAuth2 connections', () => {
  it('dry-runs with a placeholder token and covers the token request fields', () => {
    const good = connection(
      { header: false, params: { account_id: '{{settings.mid}}' } },
      { body: { xml: '<t>{{auth.accessToken}}</t>' } },
    );
    expect(checkTemplates(good)).toEqual([]);
    const bad = connection({
      scope: '{{scop}}',
      params: { grant_type: 'password', account_id: '{{settings.mdi}}' },
    });
    expect(checkTemplates(bad)).toEqual([
      {
        field: 'request.auth.params.grant_type',
        reason: 'grant_type is set by the token request itself; remove it from params',
      },
    ]);
    const unknown = connection({ scope: '{{scop}}', params: { account_id: '{{settings.mdi}}' } });
    expect(checkTemplates(unknown)).toEqual([
      { field: 'request.auth.scope', reason: 'unknown variable "scop" (line 1, column 3)' },
      { field: 'request.auth.params.account_id', reason: 'unknown variable "mdi" (line 1, column 3)' },
    ]);
  });

  it('refuses {{auth.accessToken}} in the token request and outside OAuth2 connections', () => {
    expect(checkTemplates(connection({ tokenUrl: 'https://x.example/{{auth.accessToken}}' }))).toEqual([
      {
        field: 'request.auth.tokenUrl',
        reason:
          'line 1, column 21: auth.accessToken is only available in the request of an oauth2_client_credentials connection',
      },
    ]);
    const bearer = connectionSchema.parse({
      id: 'a',
      account: 'a',
      name: 'a',
      request: {
        url: 'https://x.example',
        auth: { type: 'bearer', token: 't' },
        body: { xml: '<t>{{auth.accessToken}}</t>' },
      },
    });
    expect(checkTemplates(bearer)).toEqual([
      {
        field: 'request.body.xml',
        reason:
          'line 1, column 6: auth.accessToken is only available in the request of an oauth2_client_credentials connection',
      },
    ]);
  });

  it('lists the secrets of the token request', () => {
    expect(referencedSecrets(connection({ params: { k: "{{secret 'EXTRA'}}" } }))).toEqual([
      'EXTRA',
      'SFMC_ID',
      'SFMC_SECRET',
    ]);
  });
});
