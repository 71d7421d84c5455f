import { createHmac } from 'node:crypto';
import { UnsubRelayError } from '../errors.js';

/**
 * Request signing for `auth.type: hmac`. Pure functions: the caller renders the secret and the
 * payload and supplies the clock, so signatures are reproducible in tests.
 */

/** The signing secret cannot be used. The message never contains the secret. */
export class HmacKeyError extends UnsubRelayError {
  readonly code = 'HMAC_KEY_INVALID';
}

export type HmacAlgorithm = 'sha256' | 'sha1' | 'sha512';

const WHSEC = 'whsec_';
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Key bytes of a Standard Webhooks secret: `whsec_<base64>` decodes to the key, as the Standard
 * Webhooks and Svix libraries do. A secret without the prefix is used as its UTF-8 bytes, so a CRM
 * that hands out a plain shared secret works too.
 */
export function standardWebhookKey(secret: string): Buffer {
  if (!secret.startsWith(WHSEC)) {
    if (secret === '') throw new HmacKeyError('the signing secret is empty');
    return Buffer.from(secret, 'utf8');
  }
  const encoded = secret.slice(WHSEC.length);
  // Buffer.from(..., 'base64') skips characters it does not know, so check the alphabet first.
  if (encoded === '' || !BASE64.test(encoded) || encoded.replace(/=+$/, '').length % 4 === 1) {
    throw new HmacKeyError('a whsec_ secret must be followed by base64 text');
  }
  return Buffer.from(encoded, 'base64');
}

export interface StandardWebhookInput {
  secret: string;
  /** The message id; stays the same across retries so receivers can deduplicate. */
  id: string;
  /** Unix seconds. */
  timestamp: number;
  /** The exact body sent, as text ('' when there is none). */
  body: string;
}

export interface StandardWebhookHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, per the Standard Webhooks spec. */
export function standardWebhookHeaders(input: StandardWebhookInput): StandardWebhookHeaders {
  if (!Number.isSafeInteger(input.timestamp) || input.timestamp < 0) {
    throw new HmacKeyError('the signature timestamp must be whole unix seconds');
  }
  const signed = `${input.id}.${input.timestamp}.${input.body}`;
  const signature = createHmac('sha256', standardWebhookKey(input.secret))
    .update(signed, 'utf8')
    .digest('base64');
  return {
    'webhook-id': input.id,
    'webhook-timestamp': String(input.timestamp),
    'webhook-signature': `v1,${signature}`,
  };
}

export interface CustomSignatureInput {
  algorithm: HmacAlgorithm;
  /** A string is used as its UTF-8 bytes. */
  key: string | Uint8Array;
  payload: string;
  encoding: 'hex' | 'base64';
  /** Put before the digest, e.g. `sha256=`. */
  prefix?: string;
}

/** `<prefix><digest>` for CRMs with their own scheme (GitHub-style `sha256=<hex>` and the like). */
export function customSignature(input: CustomSignatureInput): string {
  const key = typeof input.key === 'string' ? Buffer.from(input.key, 'utf8') : input.key;
  if (key.length === 0) throw new HmacKeyError('the signing secret is empty');
  const digest = createHmac(input.algorithm, key).update(input.payload, 'utf8').digest(input.encoding);
  return `${input.prefix ?? ''}${digest}`;
}
