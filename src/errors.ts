/**
 * One error hierarchy for the whole product. Every class says what the caller should do:
 * - `RetryableDeliveryError`: try the delivery again later (after `retryAfterMs` if set).
 * - `PermanentDeliveryError`: do not retry; the delivery is kept as failed and can be replayed.
 * - `ConnectionConfigError` / `TemplateError`: the connection file is wrong; fix the named field.
 * - `InputError`: a caller sent bad input; answer 4xx (or exit non-zero from the CLI) naming the field.
 * - `StoreUnavailableError`: Redis did not answer; answer 503, never pretend to have stored anything.
 *
 * `code` values are stable (like undici's `UND_ERR_*`) so operators can filter on them.
 */
export abstract class UnsubRelayError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export type DeliveryErrorCode =
  | 'HTTP_STATUS'
  | 'RULE_FAIL'
  | 'NETWORK'
  | 'CONNECT_TIMEOUT'
  | 'HEADERS_TIMEOUT'
  | 'BODY_TIMEOUT'
  | 'RESPONSE_TOO_LARGE'
  | 'TARGET_REFUSED'
  | 'TEMPLATE_ERROR'
  | 'CONNECTION_MISSING'
  | 'CONNECTION_DISABLED'
  | 'DEADLINE_PASSED';

/** Try again later; `retryAfterMs` is the server's wish (Retry-After), capped by the retry policy. */
export class RetryableDeliveryError extends UnsubRelayError {
  readonly retryable = true;
  constructor(
    readonly code: DeliveryErrorCode | (string & {}),
    message: string,
    /** Wait this long before the next attempt. */
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Retrying cannot help (the CRM refused the request, or the connection is broken): fail now. */
export class PermanentDeliveryError extends UnsubRelayError {
  readonly retryable = false;
  constructor(
    readonly code: DeliveryErrorCode | (string & {}),
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A connection file (or stored connection) does not validate. `issues` name the file and field. */
export class ConnectionConfigError extends UnsubRelayError {
  readonly code = 'CONNECTION_INVALID';
  constructor(
    readonly issues: readonly ConfigIssue[],
    options?: { cause?: unknown },
  ) {
    super(issues.map(formatConfigIssue).join('\n'), options);
  }
}

export interface ConfigIssue {
  /** File the problem is in, when it came from a file. */
  file?: string;
  /** 1-based line in that file, where it could be found. */
  line?: number;
  /** Dotted path of the field, e.g. `request.auth.token`. */
  field: string;
  reason: string;
}

export function formatConfigIssue(issue: ConfigIssue): string {
  const where = issue.file ? `${issue.file}${issue.line ? `:${issue.line}` : ''}: ` : '';
  return `${where}${issue.field || '(file)'}: ${issue.reason}`;
}

/** A template failed to compile or render. Names the connection and the templated field. */
export class TemplateError extends UnsubRelayError {
  readonly code = 'TEMPLATE_ERROR';
  constructor(
    readonly connectionId: string,
    readonly field: string,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`connection ${connectionId}: ${field}: ${reason}`, options);
  }
}

/** Bad input from an API caller or a CLI user; `fields` maps each bad field to its reason. */
export class InputError extends UnsubRelayError {
  readonly code = 'INVALID_INPUT';
  constructor(
    message: string,
    readonly fields: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * Redis did not answer. The caller should retry later. `maybeStored` is true when the write was sent
 * and its answer lost (a timeout): it may have happened, so retry idempotently.
 */
export class StoreUnavailableError extends UnsubRelayError {
  readonly code = 'STORE_UNAVAILABLE';
  constructor(
    message: string,
    readonly maybeStored = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The request is valid but the thing is not in a state that allows it (replaying a pending delivery). */
export class ConflictError extends UnsubRelayError {
  readonly code = 'CONFLICT';
}

/** The thing asked for does not exist (delivery id, API key id, connection id). */
export class NotFoundError extends UnsubRelayError {
  readonly code = 'NOT_FOUND';
}

/** A startup problem the operator must fix (no Redis, bad environment). Message says how. */
export class StartupError extends UnsubRelayError {
  readonly code = 'STARTUP';
}

/**
 * The stored connection changed between reading it and writing a change to it (two operators, or two
 * engines applying files, at once). Read it again and redo the change; callers retry a few times.
 */
export class ConnectionChangedError extends UnsubRelayError {
  readonly code = 'CONNECTION_CHANGED';
}
