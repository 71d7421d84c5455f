import { StoreUnavailableError } from '../errors.js';

/** How long Redis may take, in total, over one ingest request (docs/operations.md, "Ingest"). */
export const INGEST_DEADLINE_MS = 5_000;

/**
 * One ingest request's Redis time, shared by its steps (the API key lookup, then the ledger and
 * fan-out): each step gets what the earlier ones left, so a hanging Redis costs the caller the
 * deadline once, not a command timeout per command. The client's own upload time is not counted.
 */
export class IngestDeadline {
  private leftMs: number;

  constructor(
    totalMs = INGEST_DEADLINE_MS,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.leftMs = totalMs;
  }

  /**
   * `work`'s result, or a StoreUnavailableError once the time left runs out. `maybeStored` says
   * whether `work` writes: a write abandoned here may still land in Redis later, so the caller is
   * told to retry with the same Idempotency-Key.
   */
  async run<T>(work: Promise<T>, maybeStored: boolean): Promise<T> {
    const started = this.clock();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StoreUnavailableError(
              `Redis did not answer within the ${INGEST_DEADLINE_MS} ms ingest deadline`,
              maybeStored,
            ),
          ),
        Math.max(0, this.leftMs),
      );
    });
    // An abandoned command still settles later; its outcome is nobody's to handle.
    work.catch(() => undefined);
    try {
      return await Promise.race([work, late]);
    } finally {
      clearTimeout(timer);
      this.leftMs -= this.clock() - started;
    }
  }
}
