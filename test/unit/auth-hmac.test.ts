import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  HmacKeyError,
  customSignature,
  standardWebhookHeaders,
  standardWebhookKey,
} from '../../src/auth/hmac.js';

describe('standardWebhookHeaders', () => {
  it('reproduces the Standard Webhooks reference vector', () => {
    // From standard-webhooks/standard-webhooks, libraries/javascript/src/webhook.test.ts ("sign function works").
    expect(
      standardWebhookHeaders({
        secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
        timestamp: 1614265330,
        body: '{"test": 2432232314}',
      }),
    ).toEqual({
      'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      'webhook-timestamp': '1614265330',
      'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    });
  });

  it('signs "id.timestamp.body" with the base64-decoded whsec_ key', () => {
    const key = Buffer.from('0123456789abcdef0123456789abcdef');
    const body = '{"email":"zoë+news@example.com"}';
    const expected = createHmac('sha256', key).update(`unsub-1.1700000000.${body}`, 'utf8').digest('base64');
    const headers = standardWebhookHeaders({
      secret: `whsec_${key.toString('base64')}`,
      id: 'unsub-1',
      timestamp: 1700000000,
      body,
    });
    expect(headers['webhook-signature']).toBe(`v1,${expected}`);
  });

  it('uses a secret without the whsec_ prefix as raw UTF-8 bytes', () => {
    const expected = createHmac('sha256', Buffer.from('plain shared secret', 'utf8'))
      .update('id.5.', 'utf8')
      .digest('base64');
    expect(
      standardWebhookHeaders({ secret: 'plain shared secret', id: 'id', timestamp: 5, body: '' })[
        'webhook-signature'
      ],
    ).toBe(`v1,${expected}`);
  });

  it('refuses a whsec_ secret that is not base64, without quoting it', () => {
    for (const secret of ['whsec_', 'whsec_not*base64!', 'whsec_abcde']) {
      let error: unknown;
      try {
        standardWebhookKey(secret);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(HmacKeyError);
      expect((error as Error).message).toBe('a whsec_ secret must be followed by base64 text');
    }
    expect(standardWebhookKey('whsec_AAEC')).toEqual(Buffer.from([0, 1, 2]));
    expect(standardWebhookKey('whsec_AAE=')).toEqual(Buffer.from([0, 1]));
  });

  it('refuses a timestamp that is not whole unix seconds', () => {
    expect(() => standardWebhookHeaders({ secret: 'k', id: 'i', timestamp: 1.5, body: '' })).toThrow(
      HmacKeyError,
    );
  });
});

describe('customSignature', () => {
  it('gives prefix + hex or base64 digest of the payload', () => {
    const payload = '1700000000.{"a":1}';
    const hex = createHmac('sha256', 'k3y').update(payload).digest('hex');
    expect(
      customSignature({ algorithm: 'sha256', key: 'k3y', payload, encoding: 'hex', prefix: 'sha256=' }),
    ).toBe(`sha256=${hex}`);
    const b64 = createHmac('sha512', 'k3y').update(payload).digest('base64');
    expect(customSignature({ algorithm: 'sha512', key: 'k3y', payload, encoding: 'base64' })).toBe(b64);
    const sha1 = createHmac('sha1', Buffer.from([1, 2, 3]))
      .update(payload)
      .digest('hex');
    expect(
      customSignature({ algorithm: 'sha1', key: new Uint8Array([1, 2, 3]), payload, encoding: 'hex' }),
    ).toBe(sha1);
  });

  it('matches a fixed HMAC-SHA256 test vector (RFC 4231 case 2)', () => {
    expect(
      customSignature({
        algorithm: 'sha256',
        key: 'Jefe',
        payload: 'what do ya want for nothing?',
        encoding: 'hex',
      }),
    ).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });

  it('refuses an empty key', () => {
    expect(() => customSignature({ algorithm: 'sha256', key: '', payload: 'x', encoding: 'hex' })).toThrow(
      'the signing secret is empty',
    );
  });
});
