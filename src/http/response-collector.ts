import type { Dispatcher } from 'undici';

// The answer side of the sender (sender.ts): what undici hands over, collected into status, headers
// and a bounded body, without a body stream or an AbortController per request.

/** The overall deadline passed (see `send`). */
export class DeadlinePassed extends Error {
  constructor() {
    super('the attempt ran out of time');
  }
}

/** The body passed maxResponseBytes: the rest is not read (the request is aborted, its answer kept). */
export class BodyCut extends Error {
  constructor() {
    super('response body over maxResponseBytes: the rest is not read');
  }
}

export interface Collected {
  status: number;
  headers: Record<string, string>;
  text: string;
  truncated: boolean;
}

const utf8 = new TextDecoder('utf-8');

/**
 * One exchange's answer, as undici hands it over: the final status, the headers (lowercase, repeated
 * ones joined with ", ") and at most `max` bytes of body. Past the limit the request is aborted (the
 * socket is dropped rather than drained) and the excerpt kept: a large answer is still an answer the
 * rules can judge, so it is not an error. `RESPONSE_TOO_LARGE` stays unused by this sender.
 */
export class ResponseCollector implements Dispatcher.DispatchHandler {
  readonly collected: Promise<Collected>;
  gotHeaders = false;
  private resolve!: (collected: Collected) => void;
  private reject!: (error: unknown) => void;
  private abortRequest: ((reason: Error) => void) | undefined;
  /** Given up before undici let us abort (still queued for a socket): aborted as soon as it can be. */
  private abandoned: Error | undefined;
  private done = false;
  private status = 0;
  private headers: Record<string, string> = {};
  private readonly chunks: Buffer[] = [];
  private kept = 0;

  constructor(private readonly max: number) {
    this.collected = new Promise<Collected>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Ends the exchange now with `reason` (the deadline passed). */
  giveUp(reason: Error): void {
    if (this.done) return;
    this.done = true;
    this.reject(reason);
    if (this.abortRequest) this.abortRequest(reason);
    else this.abandoned = reason;
  }

  onConnect(abort: (reason: Error) => void): void {
    this.abortRequest = abort;
    if (this.abandoned) abort(this.abandoned);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[]): boolean {
    // An informational answer (100 Continue, 103) is followed by the real one.
    if (statusCode < 200) return true;
    this.status = statusCode;
    this.headers = flattenHeaders(rawHeaders);
    this.gotHeaders = true;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return true;
    const room = this.max - this.kept;
    if (chunk.length <= room) {
      this.chunks.push(chunk);
      this.kept += chunk.length;
      return true;
    }
    this.chunks.push(chunk.subarray(0, room));
    this.kept = this.max;
    // No final flush: a multi-byte character cut at the limit is dropped, not shown as U+FFFD.
    this.finish(new TextDecoder('utf-8').decode(this.body(), { stream: true }), true);
    this.abortRequest?.(new BodyCut());
    return false;
  }

  onComplete(): void {
    if (!this.done) this.finish(utf8.decode(this.body()), false);
  }

  onError(error: Error): void {
    if (this.done) return;
    this.done = true;
    this.reject(error);
  }

  private body(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.kept);
  }

  private finish(text: string, truncated: boolean): void {
    this.done = true;
    this.resolve({ status: this.status, headers: this.headers, text, truncated });
  }
}

/** undici's raw headers (name, value, name, value...) as one lowercase name → value record. */
function flattenHeaders(raw: ReadonlyArray<Buffer | string>): Record<string, string> {
  const flat: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = latin1(raw[i]!).toLowerCase();
    const value = Object.hasOwn(flat, name) ? `${flat[name]}, ${latin1(raw[i + 1]!)}` : latin1(raw[i + 1]!);
    // A CRM's header named __proto__ is a header like any other, not the record's prototype.
    if (name === '__proto__')
      Object.defineProperty(flat, name, { value, enumerable: true, configurable: true, writable: true });
    else flat[name] = value;
  }
  return flat;
}

function latin1(raw: Buffer | string): string {
  return typeof raw === 'string' ? raw : raw.toString('latin1');
}
