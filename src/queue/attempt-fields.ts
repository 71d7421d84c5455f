import type {
  Attempt,
  AttemptBatch,
  RenderedRequest,
  SendOutcome,
  SharedRequest,
  Verdict,
} from '../domain/delivery.js';
import { scrubSecrets } from '../domain/scrub.js';
import { withOwnItem } from '../store/attempt-store.js';
import { redactRequestLine } from '../templates/redact.js';

/** Bytes of response body kept in an attempt record: enough to read an error, not a whole page. */
const EXCERPT_BYTES = 2_048;
/** Characters of request body (or batch item) kept in an attempt record. */
export const REQUEST_BODY_KEPT = 4_096;

function bounded(text: string): { text: string; cut: boolean } {
  return text.length > REQUEST_BODY_KEPT
    ? { text: text.slice(0, REQUEST_BODY_KEPT), cut: true }
    : { text, cut: false };
}

/** The request a batch's deliveries share, with no one's item in it. */
export function sharedRequest(request: RenderedRequest): SharedRequest {
  const line = redactRequestLine(request);
  const text = request.batchBody?.shared ?? request.body;
  if (text === undefined) return { ...line };
  const body = bounded(scrubSecrets(text, request.secrets));
  return { ...line, body: body.text, ...(body.cut ? { bodyTruncated: true } : {}) };
}

/** What the processor says about an attempt; the attempt store adds who, when and which number. */
export type AttemptFields = Omit<
  Attempt,
  'deliveryId' | 'number' | 'startedAt' | 'durationMs' | 'connectionVersion'
>;

/**
 * The attempt record of one exchange: redacted request, status, bounded secret-free excerpt, and
 * the batched request it was (`batch`, the same for every delivery of one request). The
 * deliveries of a batch that got the same verdict get the same object (treat it as read-only), so
 * the attempt store serialises it once for all of them.
 */
export function attemptFields(
  request: RenderedRequest,
  outcome: SendOutcome,
  verdict: Verdict,
  batch?: AttemptBatch,
  itemIndex?: number,
): AttemptFields {
  // A request of one delivery's own: nothing to share, so nothing kept (a WeakMap entry per attempt
  // is work for the garbage collector too). Its body is its own: kept, redacted and bounded.
  if (!batch) {
    const own = recordOf(request, outcome);
    const body =
      request.body === undefined ? undefined : bounded(scrubSecrets(request.body, request.secrets));
    return {
      ...own,
      ...(own.request && body
        ? { request: { ...own.request, body: body.text, ...(body.cut ? { bodyTruncated: true } : {}) } }
        : {}),
      ...verdictFields(verdict),
    };
  }
  const exchange = exchangeRecord(request, outcome, batch);
  const key = `${verdict.verdict}\0${verdict.reason}\0${'code' in verdict ? verdict.code : ''}`;
  let byVerdict = sameVerdict.get(exchange);
  if (!byVerdict) sameVerdict.set(exchange, (byVerdict = new Map()));
  let fields = byVerdict.get(key);
  if (!fields) {
    fields = { ...exchange, ...verdictFields(verdict) };
    byVerdict.set(key, fields);
  }
  // In a batch, a delivery's record keeps its own item only: the request they share is kept once
  // (`sharedRequest`), so no record shows another delivery's address. The item rides beside the
  // shared fields, which the attempt store still serialises once for all (`withOwnItem`).
  const item = itemIndex === undefined ? undefined : request.batchBody?.items[itemIndex];
  if (item === undefined) return fields;
  const own = bounded(scrubSecrets(JSON.stringify(item), request.secrets));
  return withOwnItem(fields, own.text, own.cut);
}

function verdictFields(verdict: Verdict): Pick<AttemptFields, 'verdict' | 'reason' | 'errorCode'> {
  return 'code' in verdict
    ? { verdict: verdict.verdict, reason: verdict.reason, errorCode: verdict.code }
    : { verdict: verdict.verdict, reason: verdict.reason };
}
const sameVerdict = new WeakMap<ExchangeRecord, Map<string, AttemptFields>>();

type ExchangeRecord = Pick<AttemptFields, 'request' | 'status' | 'responseExcerpt' | 'batch'>;
// Every delivery of a batch records the same request and answer: redact and scrub them once.
const exchangeRecords = new WeakMap<SendOutcome, ExchangeRecord>();

// One outcome is one request's answer, so it carries one `batch`.
function exchangeRecord(request: RenderedRequest, outcome: SendOutcome, batch: AttemptBatch): ExchangeRecord {
  const known = exchangeRecords.get(outcome);
  if (known) return known;
  const fields: ExchangeRecord = { ...recordOf(request, outcome), batch };
  exchangeRecords.set(outcome, fields);
  return fields;
}

/** The redacted request and the answer's status and bounded, secret-free excerpt. */
function recordOf(request: RenderedRequest, outcome: SendOutcome): ExchangeRecord {
  if (outcome.kind !== 'response') return { request: redactRequestLine(request) };
  return {
    request: redactRequestLine(request),
    status: outcome.status,
    // A CRM may echo the request (and so a key) back in an error body: scrub the whole body, then cut.
    responseExcerpt: scrubSecrets(outcome.body, request.secrets, {
      truncated: outcome.bodyTruncated,
    }).slice(0, EXCERPT_BYTES),
  };
}
