import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { connectionSchema, type Connection } from '../../src/config/connection-schema.js';
import type { Unsubscribe } from '../../src/domain/unsubscribe.js';
import { redactRequest } from '../../src/templates/redact.js';
import {
  checkTemplates,
  compileConnection,
  referencedSecrets,
  renderRequest,
  templateContext,
  type SecretSource,
} from '../../src/templates/render-request.js';

const unsubscribe: Unsubscribe = {
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  account: 'acme',
  email: "o'brien+news@example.com",
  receivedAt: '2024-05-01T10:00:00.000Z',
  attributes: {},
};
const WHSEC = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const RAW = 'sh4red-s3cret';
const secrets: SecretSource = { get: (name) => ({ WEBHOOK_SECRET: WHSEC, RAW_SECRET: RAW })[name] };
const clock = { now: () => 1614265330_000 };

function connection(
  auth: Record<string, unknown>,
  body: Record<string, unknown> = { json: { email: '{{email}}' } },
) {
  return connectionSchema.parse({
    id: 'acme-hook',
    account: 'acme',
    name: 'Acme webhook',
    request: { url: 'https://hooks.example/v1/unsub?source=relay', auth: { type: 'hmac', ...auth }, body },
  });
}

const render = (conn: Connection) =>
  renderRequest(
    compileConnection(conn),
    templateContext(unsubscribe, conn, 1, { sandboxUrl: 'http://x' }),
    secrets,
    undefined,
    clock,
  );

describe('hmac: standard webhooks', () => {
  it('signs the body as sent with the spec vector secret, id and timestamp', () => {
    const conn = connection(
      { scheme: 'standard_webhooks', secret: "{{secret 'WEBHOOK_SECRET'}}" },
      { text: '{"test": 2432232314}', contentType: 'application/json' },
    );
    const request = render(conn);
    // Same id, timestamp, body and secret as the Standard Webhooks reference test.
    expect(request.headers).toEqual({
      'content-type': 'application/json',
      'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      'webhook-timestamp': '1614265330',
      'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    });
    expect(request.secrets).toContain(WHSEC);
    expect(request.secrets).not.toContain('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('signs a rendered JSON body, checked independently with node:crypto', () => {
    const request = render(
      connection({ scheme: 'standard_webhooks', secret: "{{secret 'WEBHOOK_SECRET'}}" }),
    );
    expect(request.body).toBe('{"email":"o\'brien+news@example.com"}');
    const key = Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64');
    const expected = createHmac('sha256', key)
      .update(`msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.${request.body}`)
      .digest('base64');
    expect(request.headers['webhook-signature']).toBe(`v1,${expected}`);
  });

  it('refuses headers that clash with the signature headers', () => {
    const conn = connectionSchema.parse({
      id: 'a',
      account: 'a',
      name: 'a',
      request: {
        url: 'https://x.example',
        auth: { type: 'hmac', scheme: 'standard_webhooks', secret: 'k' },
        headers: { 'Webhook-Id': '{{id}}' },
      },
    });
    expect(checkTemplates(conn)).toEqual([
      { field: 'request.headers.Webhook-Id', reason: 'set by request.auth (hmac); remove one of them' },
    ]);
  });

  it('reports a malformed whsec_ secret at its field, without the secret', () => {
    const conn = connection({ scheme: 'standard_webhooks', secret: 'whsec_***' });
    expect(() => render(conn)).toThrow(
      'connection acme-hook: request.auth.secret: a whsec_ secret must be followed by base64 text',
    );
  });
});

describe('hmac: custom', () => {
  it('signs the default payload (the body) into X-Signature as hex', () => {
    const request = render(connection({ secret: "{{secret 'RAW_SECRET'}}" }));
    const expected = createHmac('sha256', RAW).update(request.body!).digest('hex');
    expect(request.headers['x-signature']).toBe(expected);
  });

  it('renders the payload over body, timestamp, id, method, url and path', () => {
    const conn = connection({
      secret: "{{secret 'RAW_SECRET'}}",
      algorithm: 'sha512',
      encoding: 'base64',
      header: 'X-Hub-Signature',
      prefix: 'sha512=',
      timestampHeader: 'X-Timestamp',
      payload: '{{method}}\n{{path}}\n{{url}}\n{{timestamp}}\n{{id}}\n{{body}}',
    });
    const request = render(conn);
    const payload =
      'POST\n/v1/unsub?source=relay\nhttps://hooks.example/v1/unsub?source=relay\n1614265330\n' +
      `msg_p5jXN8AQM9LWM0D4loKWxJek\n${request.body}`;
    const expected = createHmac('sha512', RAW).update(payload).digest('base64');
    expect(request.headers).toEqual({
      'content-type': 'application/json',
      'x-hub-signature': `sha512=${expected}`,
      'x-timestamp': '1614265330',
    });
  });

  it('never shows the secret in the redacted request, even when a template writes it out', () => {
    const conn = connection(
      { secret: "{{secret 'RAW_SECRET'}}" },
      { form: { key: "{{secret 'RAW_SECRET'}}", email: '{{email}}' } },
    );
    const redacted = redactRequest(render(conn));
    expect(JSON.stringify(redacted)).not.toContain(RAW);
    expect(redacted.body).toBe('key=[redacted]&email=o%27brien%2Bnews%40example.com');
  });

  it('checks the payload template and lists its secrets', () => {
    expect(checkTemplates(connection({ secret: 'literal-key', payload: '{{timestamp}}.{{bodyy}}' }))).toEqual(
      [{ field: 'request.auth.payload', reason: 'unknown variable "bodyy" (line 1, column 17)' }],
    );
    expect(checkTemplates(connection({ secret: 'literal-key', payload: '{{email}}' }))).toEqual([
      { field: 'request.auth.payload', reason: 'unknown variable "email" (line 1, column 3)' },
    ]);
    expect(
      referencedSecrets(
        connection({ secret: "{{secret 'RAW_SECRET'}}", payload: "{{body}}{{secret 'SALT'}}" }),
      ),
    ).toEqual(['RAW_SECRET', 'SALT']);
  });

  it('refuses the same header for signature and timestamp', () => {
    expect(checkTemplates(connection({ secret: 'k', header: 'X-Sig', timestampHeader: 'x-sig' }))).toEqual([
      { field: 'request.auth.timestampHeader', reason: 'same header as request.auth.header' },
    ]);
  });
});
