import { z } from 'zod';
import { unsubscribeSchema, type Unsubscribe } from './unsubscribe.js';

/**
 * One unsubscribe to one connection: the BullMQ job's data. The job id names the delivery,
 * `${unsubscribeId}:${connectionId}`, and the queue is the connection's, so the data holds only what
 * changes how it is sent. The worker reads the unsubscribe from its ledger entry (src/store/ledger.ts):
 * one copy however many connections it goes to, and a queued job's hash small enough to stay a listpack.
 */
export const deliveryJobSchema = z.object({
  /** Replay of the original request (issue 5): render with this stored connection version, not the current one. */
  pinVersion: z.number().int().min(1).optional(),
  /** A batch the CRM refused was split: this delivery goes in batches of at most this many. */
  batchSplit: z.number().int().min(1).optional(),
  /**
   * The refused batch it was split from (`parent`, a request id), the first of that line (`root`),
   * and how it was refused: halves refused the same way stop the splitting (src/queue/split-refusal.ts).
   */
  splitOf: z
    .object({
      root: z.string(),
      parent: z.string(),
      status: z.number().int(),
      rule: z.union([z.number().int(), z.literal('default')]),
      /** sha1 of the answer's body: a wrong list id answers alike, bad addresses name themselves. */
      body: z.string().optional(),
    })
    .optional(),
  /** Attempts it made in a batch job before it was handed over to a job of its own. */
  priorAttempts: z.number().int().min(1).optional(),
  /** It failed for good in a batch job (the attempt is recorded): its own job only keeps it failed, for replay. */
  failedAs: z.object({ code: z.string(), reason: z.string() }).optional(),
});
export type DeliveryJob = z.infer<typeof deliveryJobSchema>;

/**
 * A batch job (issue 7): many deliveries of one batched connection, sent as one request. Its id is
 * `batch-<uuid>` (never a delivery id, which starts with the unsubscribe's UUID), and the delivery
 * ids it carries are the Redis list it names (src/store/batch-buffer.ts).
 */
export const batchJobSchema = z.object({
  batch: z.string(),
  connectionId: z.string(),
  /** Added again for a batch whose job was lost: it carries on from what its deliveries' records say. */
  resumed: z.boolean().optional(),
});
export type BatchJob = z.infer<typeof batchJobSchema>;

export const BATCH_JOB_PREFIX = 'batch-';

export function isBatchJob(job: { id?: string | undefined }): boolean {
  return job.id?.startsWith(BATCH_JOB_PREFIX) ?? false;
}

/** Jobs queued before deliveries referred to the ledger carry the whole unsubscribe: still delivered as they are. */
const inlineDeliveryJobSchema = deliveryJobSchema.extend({
  unsubscribe: unsubscribeSchema,
  connectionId: z.string(),
});

/** A delivery job read back: who it is for, and the unsubscribe itself when the job carries it. */
export interface StoredDeliveryJob extends DeliveryJob {
  deliveryId: string;
  unsubscribeId: string;
  connectionId: string;
  unsubscribe?: Unsubscribe;
}

/** Reads a delivery job of either shape (a malformed one throws, as any zod boundary does). */
export function readDeliveryJob(job: { id?: string | undefined; data: unknown }): StoredDeliveryJob {
  const id = job.id ?? '';
  const { unsubscribeId, connectionId } = partsOfDeliveryId(id);
  // Told apart by a key, not by trying one schema and then the other: this runs for every delivery.
  if (typeof job.data === 'object' && job.data !== null && 'unsubscribe' in job.data) {
    const { unsubscribe, connectionId: _same, ...adjustments } = inlineDeliveryJobSchema.parse(job.data);
    return { ...adjustments, deliveryId: id, unsubscribeId, connectionId, unsubscribe };
  }
  return { ...deliveryJobSchema.parse(job.data), deliveryId: id, unsubscribeId, connectionId };
}

/** Unsubscribe ids are UUIDs (no ":"), so everything after the first ":" is the connection id. */
export function partsOfDeliveryId(id: string): { unsubscribeId: string; connectionId: string } {
  const at = id.indexOf(':');
  return at < 0
    ? { unsubscribeId: id, connectionId: '' }
    : { unsubscribeId: id.slice(0, at), connectionId: id.slice(at + 1) };
}

export function deliveryId(unsubscribeId: string, connectionId: string): string {
  return `${unsubscribeId}:${connectionId}`;
}

/** A request ready to send: the output of rendering, the input of the sender. */
export interface RenderedRequest {
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'GET';
  url: string;
  headers: Record<string, string>;
  body?: string;
  /**
   * Exact strings that must never be shown: secret values and auth header values. `redactRequest`
   * replaces them wherever they appear (URL, headers, body) before anything is logged or recorded.
   */
  secrets: string[];
  /**
   * A batched JSON body in parts, for attempt records that must not show other people's addresses:
   * what `$each` rendered for each unsubscribe (in the batch's order), and the body with those lists
   * replaced by a marker (the request every delivery of the batch shares).
   */
  batchBody?: { items: readonly unknown[]; shared: string };
}

/** What came back from the CRM, or why nothing did. Never a thrown error: the sender classifies transport failures. */
export type SendOutcome =
  | {
      kind: 'response';
      status: number;
      headers: Record<string, string>;
      /** The first `maxResponseBytes` of the body, decoded as UTF-8. */
      body: string;
      bodyTruncated: boolean;
      durationMs: number;
    }
  | {
      kind: 'error';
      code:
        | 'NETWORK'
        | 'CONNECT_TIMEOUT'
        | 'HEADERS_TIMEOUT'
        | 'BODY_TIMEOUT'
        | 'RESPONSE_TOO_LARGE'
        | 'TARGET_REFUSED'
        /** The HTTP client could not build the request (a header it cannot send): nothing left us. */
        | 'REQUEST_INVALID';
      message: string;
      durationMs: number;
    };

/**
 * The decision about one attempt. `retryAfterMs` is set when the CRM or a rule asked for a specific
 * wait. `success_already_done` counts as delivered. `rate_limited` waits without spending an attempt;
 * `refresh_auth` asks for a new OAuth2 token and one resend.
 */
export type Verdict =
  | { verdict: 'success' | 'success_already_done'; reason: string; rule: number | 'default' }
  | {
      verdict: 'retry' | 'rate_limited';
      reason: string;
      rule: number | 'default';
      code: string;
      retryAfterMs?: number;
    }
  | { verdict: 'refresh_auth' | 'fail'; reason: string; rule: number | 'default'; code: string };

/** A verdict that means the CRM has the unsubscribe (it took it now, or had it already). */
export function isDelivered(verdict: string | undefined): boolean {
  return verdict === 'success' || verdict === 'success_already_done';
}

export const verdictNames = z.enum([
  'success',
  'success_already_done',
  'retry',
  'rate_limited',
  'refresh_auth',
  'fail',
]);

export const attemptSchema = z.object({
  deliveryId: z.string(),
  number: z.number().int().min(0),
  startedAt: z.string(),
  durationMs: z.number(),
  connectionVersion: z.number().int(),
  // Absent when nothing could be sent (the connection was deleted, or its templates did not render).
  request: z
    .object({
      method: z.string(),
      url: z.string(),
      headers: z.record(z.string(), z.string()),
      /** The body sent, redacted and cut at 4 KiB (a delivery sent alone). */
      body: z.string().optional(),
      /** The body was longer than the record keeps. */
      bodyTruncated: z.boolean().optional(),
    })
    .optional(),
  /**
   * In a batch: what this delivery's `$each` item rendered, redacted and cut at 4 KiB; the request
   * the batch shared is kept once, by `batch.id` (`DeliveryDetail.batchRequests`).
   */
  requestItem: z.string().optional(),
  requestItemTruncated: z.boolean().optional(),
  status: z.number().int().optional(),
  responseExcerpt: z.string().optional(),
  verdict: verdictNames,
  /** Set when the delivery is still failing close to its retry deadline. */
  deadlineNear: z.boolean().optional(),
  /** Stable error code (`HTTP_STATUS`, `CONNECT_TIMEOUT`, ...) for anything but success. */
  errorCode: z.string().optional(),
  reason: z.string(),
  /** When the next attempt is due, for a retry verdict. */
  nextAttemptAt: z.string().optional(),
  /** Set when this delivery was a duplicate (same email, same connection, within the window): the delivery that carried it. */
  mergedInto: z.string().optional(),
  /**
   * Set when the attempt travelled in a batched request: the request's id (its batch job's, or one
   * a worker gave the request it grouped) and how many deliveries it carried. Every delivery of one
   * request shows the same id, so one bad answer can be traced to all it concerned.
   */
  batch: z.object({ id: z.string(), size: z.number().int().min(1) }).optional(),
});
/** What the deliveries of one batched request share, kept once for all of them (redacted, bounded). */
export const sharedRequestSchema = z.object({
  method: z.string(),
  url: z.string(),
  headers: z.record(z.string(), z.string()),
  /** The body with each `$each` list replaced by a marker: no one's address is in it. */
  body: z.string().optional(),
  bodyTruncated: z.boolean().optional(),
});
export type SharedRequest = z.infer<typeof sharedRequestSchema>;

/** Which batched request an attempt travelled in (`Attempt.batch`). */
export type AttemptBatch = NonNullable<Attempt['batch']>;
export type Attempt = z.infer<typeof attemptSchema>;

export const deliveryStatus = z.enum(['pending', 'retrying', 'succeeded', 'failed']);
export type DeliveryStatus = z.infer<typeof deliveryStatus>;
