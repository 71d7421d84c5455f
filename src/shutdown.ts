import type { Logger } from 'pino';

/** Something with work in flight: `drain` lets it finish, `force` cuts it short. */
export interface Drainable {
  name: string;
  drain: () => Promise<unknown>;
  force: () => Promise<unknown> | void;
}

/** Something that only needs letting go of (a Redis client, a queue handle). */
export interface Releasable {
  name: string;
  release: () => Promise<unknown>;
}

const RELEASE_TIMEOUT_MS = 2_000;

function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Stops in two phases under one bound. First every drainable drains at once (the HTTP server stops
 * taking requests and finishes those in flight; workers take no new deliveries and finish theirs);
 * at `timeoutMs` whatever is left is forced (open connections dropped, in-flight requests aborted,
 * their deliveries left for another worker). Then everything else is released, each step bounded,
 * in order. Nothing here can keep the process up much past `timeoutMs`.
 */
export async function shutdown(
  drainables: Drainable[],
  releasables: Releasable[],
  timeoutMs: number,
  logger: Logger,
): Promise<void> {
  const drained = await within(
    Promise.allSettled(
      drainables.map(async ({ name, drain }) =>
        drain().catch((error: unknown) =>
          logger.warn({ err: error, component: name }, 'error while draining'),
        ),
      ),
    ),
    timeoutMs,
  );
  if (drained === 'timeout') {
    logger.warn(
      { timeoutMs },
      'in-flight work did not finish in time: cutting it short (unfinished deliveries are retried)',
    );
    await within(Promise.allSettled(drainables.map(async ({ force }) => force())), RELEASE_TIMEOUT_MS);
  }
  for (const { name, release } of releasables) {
    try {
      if ((await within(release(), RELEASE_TIMEOUT_MS)) === 'timeout')
        logger.warn({ component: name }, 'gave up waiting for it to close');
    } catch (error) {
      logger.warn({ err: error, component: name }, 'error while closing');
    }
  }
}
