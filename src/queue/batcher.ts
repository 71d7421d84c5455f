/**
 * Groups deliveries of a batched connection into one request: a group is sent when it holds
 * `maxSize` entries or `maxWait` after its first entry, whichever comes first. Each entry's
 * promise settles with the group's result and its own position in it, so every delivery goes on
 * to record and decide its own outcome. Knows nothing of HTTP or Redis: `send` does the work.
 */
export interface BatchResult<R> {
  result: R;
  /** This entry's position in the request (its per-item verdict). */
  index: number;
  size: number;
}

/** A group's request could not be sent: `cause` says why, `size` how many entries it held. */
export class GroupNotSent extends Error {
  constructor(
    override readonly cause: unknown,
    readonly size: number,
  ) {
    super(`a group of ${size} could not be sent`, { cause });
  }
}

interface Pending<E, R> {
  entries: E[];
  waiters: { resolve: (value: BatchResult<R>) => void; reject: (error: unknown) => void }[];
  timer?: ReturnType<typeof setTimeout>;
}

export class Batcher<E, R> {
  private readonly groups = new Map<string, Pending<E, R>>();

  constructor(
    private readonly send: (entries: E[]) => Promise<R>,
    private readonly timers: {
      set: (fn: () => void, ms: number) => ReturnType<typeof setTimeout>;
      clear: (timer: ReturnType<typeof setTimeout>) => void;
    } = { set: setTimeout, clear: clearTimeout },
  ) {}

  /**
   * Adds an entry to the group `key` (same connection, version and batch size: only entries that
   * can share a request). Resolves once the request is answered, rejects with `GroupNotSent` if it
   * could not be sent.
   */
  submit(key: string, entry: E, maxSize: number, maxWaitMs: number): Promise<BatchResult<R>> {
    let group = this.groups.get(key);
    if (!group) {
      group = { entries: [], waiters: [] };
      this.groups.set(key, group);
      const started = group;
      group.timer = this.timers.set(() => this.flush(key, started), maxWaitMs);
    }
    const promise = new Promise<BatchResult<R>>((resolve, reject) => group.waiters.push({ resolve, reject }));
    group.entries.push(entry);
    if (group.entries.length >= maxSize) this.flush(key, group);
    return promise;
  }

  /** Entries waiting for their group to fill, across groups. */
  get waiting(): number {
    let count = 0;
    for (const group of this.groups.values()) count += group.entries.length;
    return count;
  }

  private flush(key: string, group: Pending<E, R>): void {
    if (this.groups.get(key) !== group) return;
    this.groups.delete(key);
    if (group.timer) this.timers.clear(group.timer);
    const size = group.entries.length;
    this.send(group.entries).then(
      (result) => group.waiters.forEach((waiter, index) => waiter.resolve({ result, index, size })),
      (error: unknown) => group.waiters.forEach((waiter) => waiter.reject(new GroupNotSent(error, size))),
    );
  }
}

/** The size a batch refused whole, or that did not render, is tried again in. */
export function halfOf(size: number): number {
  return Math.max(1, Math.floor(size / 2));
}

/**
 * The largest batch a delivery may travel in: the connection's `maxSize`, halved for each retry,
 * so a batch the CRM keeps refusing is split until the address it refuses goes alone.
 */
export function batchCap(maxSize: number, attemptsMade: number, splitTo?: number): number {
  const halved = Math.max(1, Math.floor(maxSize / 2 ** Math.min(attemptsMade, 30)));
  return Math.max(1, Math.min(halved, splitTo ?? maxSize));
}
