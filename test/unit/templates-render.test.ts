import { describe, expect, it } from 'vitest';
import {
  connectionSchema,
  type Connection,
  type ConnectionInput,
} from '../../src/config/connection-schema.js';
import type { Unsubscribe } from '../../src/domain/unsubscribe.js';
import {
  checkTemplates,
  compileConnection,
  envSecrets,
  referencedSecrets,
  renderRequest,
  templateContext,
  type SecretSource,
} from '../../src/templates/render-request.js';
import { templateError } from '../helpers/template-error.js';

const unsubscribe: Unsubscribe = {
  id: '6f1c7d9e-8a7b-4c2d-9e0f-1a2b3c4d5e6f',
  account: 'acme',
  email: 'jane.doe+news@example.com',
  receivedAt: '2024-05-01T10:00:00.000Z',
  attributes: { plan: 'gold' },
};
const engine = { sandboxUrl: 'http://127.0.0.1:8787' };
const secrets: SecretSource = { get: (name) => ({ SG_KEY: 'SG.abc/def+ghi', PW: 'p@ss:"word"' })[name] };

function connection(
  request: Partial<ConnectionInput['request']>,
  extra: Partial<ConnectionInput> = {},
): Connection {
  return connectionSchema.parse({
    id: 'acme-crm',
    account: 'acme',
    name: 'Acme CRM',
    settings: { listId: 'news/letters', group: 7 },
    ...extra,
    request: { url: 'https://api.crm.example/v1/suppressions', ...request },
  });
}

function render(conn: Connection, unsub: Unsubscribe = unsubscribe, source: SecretSource = secrets) {
  return renderRequest(compileConnection(conn), templateContext(unsub, conn, 1, engine), source);
}

describe('templateContext', () => {
  it('fills absent optional fields with null and copies settings', () => {
    const conn = connection({});
    expect(templateContext(unsubscribe, conn, 4, engine)).toEqual({
      email: 'jane.doe+news@example.com',
      id: '6f1c7d9e-8a7b-4c2d-9e0f-1a2b3c4d5e6f',
      account: 'acme',
      campaign: null,
      occurredAt: null,
      receivedAt: '2024-05-01T10:00:00.000Z',
      source: null,
      attributes: { plan: 'gold' },
      attempt: 4,
      settings: { listId: 'news/letters', group: 7 },
      engine: { sandboxUrl: 'http://127.0.0.1:8787' },
    });
  });
});

describe('renderRequest', () => {
  it('renders a SendGrid-style request with a typed JSON body', () => {
    const conn = connection({
      method: 'POST',
      url: 'https://api.crm.example/v3/lists/{{settings.listId}}/recipients/{{email}}',
      auth: { type: 'bearer', token: "{{secret 'SG_KEY'}}" },
      headers: { Accept: 'application/json', 'X-Attempt': '{{attempt}}' },
      body: {
        json: {
          recipient_emails: ['{{email}}'],
          group: '{{settings.group}}',
          campaign: "{{default campaign 'none'}}",
          attributes: '{{attributes}}',
          note: 'said "{{attributes.plan}}" \\ ok',
          fixed: 5,
          nothing: null,
        },
      },
    });
    expect(render(conn)).toEqual({
      method: 'POST',
      url: 'https://api.crm.example/v3/lists/news%2Fletters/recipients/jane.doe%2Bnews@example.com',
      headers: {
        accept: 'application/json',
        'x-attempt': '1',
        authorization: 'Bearer SG.abc/def+ghi',
        'content-type': 'application/json',
      },
      body: '{"recipient_emails":["jane.doe+news@example.com"],"group":7,"campaign":"none","attributes":{"plan":"gold"},"note":"said \\"gold\\" \\\\ ok","fixed":5,"nothing":null}',
      secrets: expect.arrayContaining(['SG.abc/def+ghi', 'Bearer SG.abc/def+ghi']),
    });
  });

  it('keeps the type of single-expression leaves: null stays null, json gives a string', () => {
    const conn = connection({
      body: {
        json: { c: '{{campaign}}', j: '{{json attributes}}', t: '{{not campaign}}', s: ' {{attempt}}' },
      },
    });
    expect(render(conn).body).toBe('{"c":null,"j":"{\\"plan\\":\\"gold\\"}","t":true,"s":" 1"}');
  });

  it('keeps an author-set content type and omits the body when there is none', () => {
    const withType = connection({
      headers: { 'Content-Type': 'application/vnd.api+json' },
      body: { json: { a: 1 } },
    });
    expect(render(withType).headers).toEqual({ 'content-type': 'application/vnd.api+json' });
    const none = render(connection({ method: 'DELETE', url: 'https://x.example/{{email}}' }));
    expect(none).toEqual({
      method: 'DELETE',
      url: 'https://x.example/jane.doe%2Bnews@example.com',
      headers: {},
      secrets: [],
    });
  });

  it('does not template object keys and keeps a __proto__ key a plain key', () => {
    const conn = connection({});
    // Set after parsing: the schema's record parser does not keep a `__proto__` key either.
    conn.request.body = { json: JSON.parse('{"{{email}}": "x", "__proto__": {"polluted": "{{email}}"}}') };
    const rendered = render(conn);
    expect(rendered.body).toBe('{"{{email}}":"x","__proto__":{"polluted":"jane.doe+news@example.com"}}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('applies api_key auth with its prefix', () => {
    const conn = connection({
      auth: { type: 'api_key', header: 'Api-Key', prefix: 'Klaviyo-API-Key ', value: "{{secret 'SG_KEY'}}" },
    });
    const rendered = render(conn);
    expect(rendered.headers).toEqual({ 'api-key': 'Klaviyo-API-Key SG.abc/def+ghi' });
    expect(rendered.secrets).toEqual(
      expect.arrayContaining(['SG.abc/def+ghi', 'Klaviyo-API-Key SG.abc/def+ghi']),
    );
  });

  it('applies basic auth and records the password and header as secrets', () => {
    const conn = connection({ auth: { type: 'basic', username: 'api', password: "{{secret 'PW'}}" } });
    const rendered = render(conn);
    const credentials = Buffer.from('api:p@ss:"word"').toString('base64');
    expect(rendered.headers).toEqual({ authorization: `Basic ${credentials}` });
    expect(rendered.secrets).toEqual(
      expect.arrayContaining(['p@ss:"word"', `Basic ${credentials}`, credentials]),
    );
    expect(rendered.secrets).not.toContain('api');
  });

  it('refuses a basic-auth username with a colon', () => {
    const conn = connection({ auth: { type: 'basic', username: 'a:b', password: 'x' } });
    const error = templateError(() => render(conn));
    expect(error.message).toBe(
      'connection acme-crm: request.auth.username: the username must not contain ":"',
    );
  });

  it('refuses CR/LF header injection from the unsubscribe', () => {
    const conn = connection({ headers: { 'X-Plan': '{{attributes.plan}}' } });
    const evil = { ...unsubscribe, attributes: { plan: 'gold\r\nX-Admin: true' } };
    const error = templateError(() => render(conn, evil));
    expect(error.field).toBe('request.headers.X-Plan');
    expect(error.message).toBe(
      'connection acme-crm: request.headers.X-Plan: the value contains a control character (CR, LF, NUL, ...); refusing to send it',
    );
    const nul = { ...unsubscribe, attributes: { plan: 'a\u0000b' } };
    expect(templateError(() => render(conn, nul)).field).toBe('request.headers.X-Plan');
    const tab = { ...unsubscribe, attributes: { plan: 'a\tb' } };
    expect(render(conn, tab).headers['x-plan']).toBe('a\tb');
  });

  it('refuses a control character in a bearer token', () => {
    const conn = connection({ auth: { type: 'bearer', token: "{{secret 'T'}}" } });
    const error = templateError(() => render(conn, unsubscribe, { get: () => 'S3CR3T\nX' }));
    expect(error.field).toBe('request.auth.token');
    expect(error.message).not.toContain('S3CR3T');
  });

  it('refuses a rendered URL that is not http(s)', () => {
    const ftp = templateError(() => render(connection({ url: 'ftp://files.example/{{email}}' })));
    expect(ftp.message).toBe('connection acme-crm: request.url: the URL must be http or https, not ftp');
    const relative = templateError(() => render(connection({ url: '/relative/{{email}}' })));
    expect(relative.message).toBe(
      'connection acme-crm: request.url: the rendered URL is not a valid absolute URL',
    );
  });

  it('names the JSON leaf that fails, with its path', () => {
    const conn = connection({ body: { json: { recipients: ['{{email}}', '{{lowercase attributes}}'] } } });
    expect(templateError(() => render(conn)).field).toBe('request.body.json.recipients[1]');
  });

  it('fails naming a missing secret and never including other secret values', () => {
    const conn = connection({
      headers: { 'X-Key': "{{secret 'SG_KEY'}}" },
      body: { json: { k: "{{secret 'NOPE'}}" } },
    });
    const error = templateError(() => render(conn));
    expect(error.message).toBe('connection acme-crm: request.body.json.k: secret "NOPE" is not set');
  });

  it('does not quote a secret when a lookup inside it fails', () => {
    const conn = connection({ headers: { 'X-Key': "{{#with (secret 'SG_KEY')}}{{nope}}{{/with}}" } });
    const error = templateError(() => render(conn));
    expect(error.message).not.toContain('SG.abc');
    expect(error.cause).toBeUndefined();
  });
});

describe('compileConnection', () => {
  it('fails at compile time naming the connection and field', () => {
    const conn = connection({
      headers: { 'X-Api-Key': '{{shout email}}' },
      body: { json: { recipients: ['{{#if}}'] } },
    });
    const error = templateError(() => compileConnection(conn));
    expect(error.message).toBe(
      'connection acme-crm: request.headers.X-Api-Key: line 1, column 1: unknown helper "shout" (and 1 more problem)',
    );
  });

  it('refuses headers that clash with auth, each other, or the sender', () => {
    const conn = connection({
      auth: { type: 'bearer', token: 'x' },
      headers: { Authorization: 'Bearer y', Accept: 'a', ACCEPT: 'b', 'Content-Length': '3' },
    });
    expect(checkTemplates(conn)).toEqual([
      { field: 'request.headers.Authorization', reason: 'set by request.auth (bearer); remove one of them' },
      { field: 'request.headers.ACCEPT', reason: 'same header as Accept (header names ignore case)' },
      { field: 'request.headers.Content-Length', reason: 'set by the sender; remove it' },
    ]);
  });
});

describe('checkTemplates', () => {
  it('reports nothing for a good connection', () => {
    const conn = connection({
      url: '{{engine.sandboxUrl}}/crm/{{email}}',
      auth: { type: 'bearer', token: "{{secret 'ANY'}}" },
      body: { json: { c: "{{default campaign 'none'}}", a: '{{attempt}}' } },
    });
    expect(checkTemplates(conn)).toEqual([]);
  });

  it('reports compile problems and unknown variables with field paths', () => {
    const conn = connection({
      url: 'https://x.example/{{emial}}',
      auth: { type: 'bearer', token: '{{tokn}}' },
      headers: { 'X-List': '{{settings.lst}}' },
      body: { json: { data: { recipients: ['{{email}}', '{{md5}}'] } } },
    });
    expect(checkTemplates(conn)).toEqual([
      {
        field: 'request.body.json.data.recipients[1]',
        reason: 'line 1, column 1: md5 takes 1 argument, got 0',
      },
    ]);
    const fixed = connection({
      ...conn.request,
      body: { json: { data: { 'first name': '{{campaign.name}}' } } },
    });
    expect(checkTemplates(fixed)).toEqual([
      { field: 'request.url', reason: 'unknown variable "emial" (line 1, column 21); did you mean "email"?' },
      { field: 'request.headers.X-List', reason: 'unknown variable "lst" (line 1, column 3)' },
      { field: 'request.auth.token', reason: 'unknown variable "tokn" (line 1, column 3)' },
      { field: 'request.body.json.data["first name"]', reason: 'unknown variable "name" (line 1, column 3)' },
    ]);
  });
});

describe('referencedSecrets', () => {
  it('lists every secret name once, sorted', () => {
    const conn = connection({
      url: "https://x.example/{{secret 'PATH_KEY'}}",
      auth: { type: 'basic', username: "{{secret 'USER'}}", password: "{{secret 'PASS'}}" },
      headers: { 'X-Sig': "{{sha256 (secret 'PASS')}}" },
      body: { json: [{ k: "{{secret 'BODY'}}" }] },
    });
    expect(referencedSecrets(conn)).toEqual(['BODY', 'PASS', 'PATH_KEY', 'USER']);
  });
});

describe('envSecrets', () => {
  it('reads own, non-empty variables only', () => {
    const source = envSecrets({ TOKEN: 't0k', EMPTY: '' });
    expect(source.get('TOKEN')).toBe('t0k');
    expect(source.get('EMPTY')).toBeUndefined();
    expect(source.get('MISSING')).toBeUndefined();
    expect(source.get('constructor')).toBeUndefined();
  });
});
