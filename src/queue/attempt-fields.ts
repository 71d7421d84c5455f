import type { Attempt, RenderedRequest, SendOutcome, Verdict } from '../domain/delivery.js';
import { scrubSecrets } from '../domain/scrub.js';
import { redactRequest } from '../templates/redact.js';

/** Bytes of response body kept in an attempt record: enough to read an error, not a whole page. */
const EXCERPT_BYTES = 2_048;

/** What the processor says about an attempt; the attempt store adds who, when and which number. */
export type AttemptFields = Omit<
  Attempt,
  'deliveryId' | 'number' | 'startedAt' | 'durationMs' | 'connectionVersion'
>;

/** The attempt record of one exchange: redacted request, status, bounded secret-free excerpt. */
export function attemptFields(
  request: RenderedRequest,
  outcome: SendOutcome,
  verdict: Verdict,
): AttemptFields {
  return {
    ...exchangeRecord(request, outcome),
    verdict: verdict.verdict,
    reason: verdict.reason,
    ...('code' in verdict ? { errorCode: verdict.code } : {}),
  };
}

type ExchangeRecord = Pick<AttemptFields, 'request' | 'status' | 'responseExcerpt'>;
// Every delivery of a batch records the same request and answer: redact and scrub them once.
const exchangeRecords = new WeakMap<SendOutcome, ExchangeRecord>();

function exchangeRecord(request: RenderedRequest, outcome: SendOutcome): ExchangeRecord {
  const known = exchangeRecords.get(outcome);
  if (known) return known;
  const redacted = redactRequest(request);
  const fields: ExchangeRecord = {
    request: { method: redacted.method, url: redacted.url, headers: redacted.headers },
  };
  if (outcome.kind === 'response') {
    // A CRM may echo the request (and so a key) back in an error body: scrub the whole body, then cut.
    fields.status = outcome.status;
    fields.responseExcerpt = scrubSecrets(outcome.body, request.secrets, {
      truncated: outcome.bodyTruncated,
    }).slice(0, EXCERPT_BYTES);
  }
  exchangeRecords.set(outcome, fields);
  return fields;
}
