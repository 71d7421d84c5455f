/**
 * How many requests each connection has open at its CRM from this process. A batch job of an
 * unbatched connection sends its deliveries side by side, and a delivery job of its own sends one:
 * both take a slot first, so together they never have more open than the sender keeps sockets for
 * one CRM (WORKER_CONCURRENCY). Past that, requests would wait in undici's pool with their deadline
 * already running. Slots are handed out in the order they were asked for.
 */
export class RequestSlots {
  private readonly open = new Map<string, number>();
  private readonly queued = new Map<string, Array<() => void>>();

  constructor(
    /** Requests one connection may have open at once, in this process. */
    readonly size: number,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`request slots: size ${size} is not ≥ 1`);
  }

  /**
   * Waits for a slot of `connectionId`'s; the answer gives it back (once, however often it is
   * called). `first`: ahead of those already waiting (a delivery already admitted, whose rate-limit
   * slot and probe lease are running).
   */
  async take(connectionId: string, options: { first?: boolean } = {}): Promise<() => void> {
    const open = this.open.get(connectionId) ?? 0;
    if (open < this.size) this.open.set(connectionId, open + 1);
    else {
      let queue = this.queued.get(connectionId);
      if (!queue) this.queued.set(connectionId, (queue = []));
      const mine = queue;
      // The slot passes straight from its releaser to the first in line: the count stays as it is.
      await new Promise<void>((resolve) => (options.first ? mine.unshift(resolve) : mine.push(resolve)));
    }
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.release(connectionId);
    };
  }

  /** Runs `work` in a slot of `connectionId`'s. */
  async run<T>(connectionId: string, work: () => Promise<T>, options: { first?: boolean } = {}): Promise<T> {
    const release = await this.take(connectionId, options);
    try {
      return await work();
    } finally {
      release();
    }
  }

  /** Requests open and waiting for a slot, for one connection. */
  usage(connectionId: string): { open: number; waiting: number } {
    return { open: this.open.get(connectionId) ?? 0, waiting: this.queued.get(connectionId)?.length ?? 0 };
  }

  private release(connectionId: string): void {
    const queue = this.queued.get(connectionId);
    const next = queue?.shift();
    if (queue && queue.length === 0) this.queued.delete(connectionId);
    if (next) return next();
    const open = (this.open.get(connectionId) ?? 1) - 1;
    if (open > 0) this.open.set(connectionId, open);
    else this.open.delete(connectionId);
  }
}
