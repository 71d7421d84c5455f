import type { StoredConnection } from '../config/connection-schema.js';
import type { Metrics } from '../observe/metrics.js';
import type { ConnectionControl } from '../store/connection-control.js';
import { templateContext, type CompiledConnection } from '../templates/render-request.js';
import {
  authRefused,
  unsentVerdict,
  type AttemptInFlight,
  type AttemptResult,
  type Outcomes,
} from './delivery-outcome.js';
import { connectionSourceName } from '../config/connection-origin.js';
import { healthOf } from './delivery-health.js';
import { exchange, type Exchange, type ExchangeDeps } from './exchange.js';
import type { RequestSlots } from './request-slots.js';
import { ruleValueResolver } from './rule-values.js';

export interface EachDeliveryDeps {
  control: ConnectionControl;
  outcomes: Outcomes;
  exchangeDeps: ExchangeDeps;
  slots: RequestSlots;
  engine: { sandboxUrl: string };
  metrics?: Metrics;
  clock: () => number;
  sleep: (ms: number) => Promise<void>;
  /** True once the process is shutting down: nothing more starts. */
  stopping?: () => boolean;
  /** Records a duplicate as merged into the delivery that holds its claim. */
  merged: (d: AttemptInFlight, into: string) => Promise<void>;
  recordRefused: (d: AttemptInFlight, refused: NonNullable<Exchange['refused']>) => Promise<void>;
}

/** Why the connection said "not now", and for how long: what the caller holds the connection back for. */
export interface HeldBack {
  waitMs: number;
  reason: 'circuit_open' | 'circuit_probe' | 'rate_limit' | 'crm_rate_limited';
  /** The delivery whose answer said so (for the `rate_limited` event). */
  deliveryId: string;
}

/** How far a delivery got in its request slot. */
type Started =
  | { kind: 'not_started' }
  | { kind: 'merged'; into: string }
  | { kind: 'unsent'; error: unknown }
  | { kind: 'sent'; result: Exchange };
const NOT_STARTED: Started = { kind: 'not_started' };

export interface EachDeliveryResult {
  /** Deliveries not started because the connection said not now: they go back to wait, no attempt spent. */
  notStarted: AttemptInFlight[];
  /** The longest wait asked for, if any was. */
  heldBack?: HeldBack;
}

/**
 * Delivers the deliveries of a batch job of an unbatched connection, each in a request of its own,
 * exactly as a delivery job of its own would be: its own admission (rate limit, circuit breaker,
 * duplicate window), its own exchange, verdict and attempt record, and its own answer about the
 * CRM's health. They travel in one BullMQ job only so that queueing costs one job per batch, not
 * one per delivery (docs/performance.md, "Batch jobs for every connection").
 *
 * They go side by side, each in a request slot of this process; with `limits.concurrency` set they
 * go one after another, so the BullMQ jobs the queue's global concurrency counts are the requests
 * open at the CRM. Once the connection says not now (no rate-limit slot, the circuit open or its
 * probe out, or the CRM throttling it), or the process is shutting down, nothing more starts: the
 * rest are answered as not started.
 * `carryOn` says what happens next to each one that was attempted (or merged).
 */
export async function deliverEach(
  deps: EachDeliveryDeps,
  stored: StoredConnection,
  compiled: CompiledConnection,
  items: readonly AttemptInFlight[],
  carryOn: (d: AttemptInFlight, outcome: AttemptResult) => Promise<void>,
): Promise<EachDeliveryResult> {
  const { clock, outcomes } = deps;
  const control = stored.connection;
  const connectionId = control.id;
  const notStarted: AttemptInFlight[] = [];
  let heldBack: HeldBack | undefined;
  const holdBack = (waitMs: number, reason: HeldBack['reason'], deliveryId: string) => {
    if (!heldBack || waitMs > heldBack.waitMs) heldBack = { waitMs, reason, deliveryId };
  };

  /**
   * What happens in the request slot: whether the delivery may go, and its exchange. The slot is
   * given back as soon as the answer is in, not after the attempt is recorded: it counts requests
   * open at the CRM.
   */
  const start = async (d: AttemptInFlight): Promise<Started> => {
    // Shutting down: what has not started waits for the next process, no attempt spent (a forced
    // stop would otherwise abort it and count it against the CRM).
    if (heldBack || deps.stopping?.()) return NOT_STARTED;
    const admission = await deps.control.admit(control, d.deliveryId, d.unsubscribe.email, clock());
    // Without a version to check, admission is never stale; were it, the delivery waits its turn again.
    if (admission.kind === 'stale') return NOT_STARTED;
    if (admission.kind === 'merged') return admission;
    if (admission.halfOpened) outcomes.halfOpened(connectionId);
    if (admission.kind === 'wait') {
      deps.metrics?.rateLimitWaits.inc({ connection: connectionId, reason: admission.reason });
      // Waiting out a throttle already recorded is a plain hold: only a CRM's answer throttles anew.
      const reason = admission.reason === 'crm_rate_limited' ? 'rate_limit' : admission.reason;
      holdBack(admission.waitMs, reason, d.deliveryId);
      return NOT_STARTED;
    }
    if (admission.waitMs > 0) await deps.sleep(admission.waitMs);
    if (admission.reopening) d.reopening = true;
    // Its attempt starts now, not when its batch job did.
    d.startedAt = clock();
    const context = templateContext(d.unsubscribe, control, d.attemptNumber, deps.engine);
    try {
      const result = await exchange(
        deps.exchangeDeps,
        control,
        compiled,
        context,
        ruleValueResolver(context),
      );
      // The CRM throttles the connection: nothing more starts (for how long, its attempt says).
      if (result.verdict.verdict === 'rate_limited') holdBack(0, 'crm_rate_limited', d.deliveryId);
      return { kind: 'sent', result };
    } catch (error) {
      return { kind: 'unsent', error };
    }
  };

  const one = async (d: AttemptInFlight): Promise<void> => {
    const started = await deps.slots.run(connectionId, () => start(d));
    if (started.kind === 'not_started') return void notStarted.push(d);
    if (started.kind === 'merged') {
      await deps.merged(d, started.into);
      return carryOn(d, { kind: 'delivered' });
    }
    if (started.kind === 'unsent') {
      // Rendering or the OAuth2 token failed: nothing reached the CRM, so its health is not in question.
      const verdict = unsentVerdict(started.error, connectionSourceName(stored));
      return carryOn(
        d,
        await outcomes.conclude(d, verdict, undefined, undefined, clock() - d.startedAt, 'neutral'),
      );
    }
    const { result } = started;
    if (result.refused) await deps.recordRefused(d, result.refused);
    const verdict = authRefused(result.verdict);
    deps.metrics?.attemptSeconds.observe({ connection: connectionId }, result.outcome.durationMs / 1000);
    const outcome = await outcomes.conclude(
      d,
      verdict,
      result.request,
      result.outcome,
      result.outcome.durationMs,
      healthOf(verdict, result.outcome),
    );
    if (outcome.kind === 'retry' && outcome.rateLimited)
      holdBack(outcome.delayMs, 'crm_rate_limited', d.deliveryId);
    await carryOn(d, outcome);
  };

  if (control.limits.concurrency !== undefined) for (const d of items) await one(d);
  else await settledAll(items.map(one));
  return { notStarted, ...(heldBack ? { heldBack } : {}) };
}

/**
 * Like Promise.all, but waits for every promise before it rejects (with the first error): a batch
 * that stops on an error then reads its deliveries' records, and none may still be being written.
 */
export async function settledAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
}
