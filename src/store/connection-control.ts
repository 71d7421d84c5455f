import { emailKey } from '../domain/unsubscribe.js';
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Connection, Limits } from '../config/connection-schema.js';
import type { AttemptWrite } from './attempt-store.js';
import { ADMIT_SCRIPT, SETTLE_SCRIPT, THROTTLE_SCRIPT } from './control-scripts.js';
import { TurnBatch, eachItemCall, forEachItem, type ScriptItem } from './turn-batch.js';
import type { Keyspace } from './keys.js';

/**
 * Per-connection delivery control shared by every worker process: the rate-limit schedule (GCRA),
 * the circuit breaker and the duplicate window, each decided inside one Lua script so two workers
 * on two machines can never both take the last token or both send the probe.
 *
 * Concurrency is not here: it is BullMQ's global concurrency on the connection's own queue, which
 * keeps extra jobs in the queue instead of fetching and returning them.
 */

const ADMITTED: Admission = Object.freeze({ kind: 'go', waitMs: 0, probe: false, halfOpened: false });

/** How long a refused batch's split is remembered: its halves are sent within seconds of it. */
const SPLIT_MEMORY_MS = 60 * 60_000;

/** Longest a worker holds a fetched delivery waiting for its rate-limit slot, rather than handing it back. */
export const HOLD_MAX_MS = 1_000;

/**
 * Deliveries a rate limit can use in flight at once (Infinity without one). More are only fetched
 * to be handed back: a delivery waits at most HOLD_MAX_MS for its slot and then takes about as long
 * again to be answered, so a rate of r uses about 2r + burst at once.
 */
export function usefulInFlight(limits: Limits): number {
  if (!limits.perSecond) return Infinity;
  const burst = limits.burst ?? Math.max(1, Math.floor(limits.perSecond));
  return Math.max(1, Math.ceil((limits.perSecond * 2 * HOLD_MAX_MS) / 1000) + burst);
}

export type CircuitState = 'closed' | 'open' | 'half_open';

/** Why a connection said not now: its circuit, its own rate limit, or the CRM's 429 (and its reopening). */
export type WaitReason = 'circuit_open' | 'circuit_probe' | 'rate_limit' | 'crm_rate_limited';

export type Admission =
  /**
   * Send after `waitMs` (the reserved rate-limit slot); `probe` when this is the half-open circuit's
   * one probe; `reopening` when it is the one request that asks a CRM that throttled us again.
   */
  | { kind: 'go'; waitMs: number; probe: boolean; halfOpened: boolean; reopening?: true }
  /** Not now: the whole connection waits `waitMs` (the circuit is open, the probe is out, or no token). */
  | {
      kind: 'wait';
      waitMs: number;
      reason: WaitReason;
      halfOpened: boolean;
    }
  /** The same email went to this connection within the duplicate window, as delivery `into`. */
  | { kind: 'merged'; into: string }
  /**
   * Nothing taken: the connection is no longer the version the caller holds. `record` is the current
   * stored record (for `ConnectionStore.parse`); none when the connection was deleted.
   */
  | { kind: 'stale'; record?: string };

/**
 * `up`: the CRM answered definitely (delivered, or refused this one request for good). `down`: it
 * did not answer properly (network, timeout, 5xx). `neutral`: says nothing about its health (429).
 */
export type HealthOutcome = 'up' | 'down' | 'neutral';

export type ControlEvent =
  'circuit_opened' | 'circuit_closed' | 'connection_failing' | 'connection_recovered';

export interface Settled {
  state: CircuitState;
  consecutiveFailures: number;
  events: ControlEvent[];
}

export interface ControlStatus {
  circuit: CircuitState;
  consecutiveFailures: number;
  failing: boolean;
  /** When an open circuit lets its probe through. */
  openUntil?: string;
  changedAt?: string;
  /** Set while an operator has paused the connection. */
  paused?: { by: string; at: string; reason: string };
}

interface WithControlScripts {
  urAdmitEach(numberOfKeys: number, ...keysThenArgs: (string | number)[]): Promise<string[][]>;
  urSettleEach(numberOfKeys: number, ...keysThenArgs: (string | number)[]): Promise<(string | number)[][]>;
  urThrottle(key: string, until: number): Promise<number>;
}

const ADMIT_KEYS = 4;
const ADMIT_ARGS = 11;
const SETTLE_KEYS = 5;
const SETTLE_ARGS = 15;

/** A stable, email-free key part for the duplicate window: case and surrounding space do not matter. */
export function emailHash(email: string): string {
  return createHash('sha256').update(emailKey(email)).digest('hex').slice(0, 32);
}

export class ConnectionControl {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
  ) {
    // Registered commands: EVALSHA on the hot path, the script sent once per connection. Each runs
    // for every admission (or settlement) made in one turn of the event loop (TurnBatch).
    if (!('urAdmitEach' in redis))
      redis.defineCommand('urAdmitEach', { lua: forEachItem(ADMIT_SCRIPT, ADMIT_KEYS, ADMIT_ARGS) });
    if (!('urSettleEach' in redis))
      redis.defineCommand('urSettleEach', { lua: forEachItem(SETTLE_SCRIPT, SETTLE_KEYS, SETTLE_ARGS) });
    if (!('urThrottle' in redis))
      redis.defineCommand('urThrottle', { numberOfKeys: 1, lua: THROTTLE_SCRIPT });
    const scripted = redis as unknown as WithControlScripts;
    this.scripted = scripted;
    // `admit` and `settle` below build each item with exactly the script's number of keys and
    // arguments (the test 'admissions made in one turn' would see a shift).
    this.admits = new TurnBatch(eachItemCall(redis, scripted.urAdmitEach, ADMIT_KEYS));
    this.settles = new TurnBatch(eachItemCall(redis, scripted.urSettleEach, SETTLE_KEYS));
  }
  private readonly admits: TurnBatch<ScriptItem, string[]>;
  private readonly settles: TurnBatch<ScriptItem, (string | number)[]>;
  private readonly scripted: WithControlScripts;
  /**
   * Connections this process saw throttled (429) and not yet reopened: their admissions ask Redis
   * even when nothing else would (no rate, circuit or window), so the reopening is never skipped.
   */
  private readonly throttledHere = new Set<string>();

  /**
   * May this delivery go now? Takes the rate-limit slot, the probe and the duplicate claim when it
   * may. With `version`, first checks that it is still the connection's stored version, and takes
   * nothing (answers `stale`) when it is not. `throttle: false` for an admission that is not a
   * request of its own (a duplicate claim, a batch's deliveries once their request was admitted).
   */
  async admit(
    connection: Connection,
    deliveryId: string,
    email: string,
    now: number,
    options: { version?: number; throttle?: boolean } = {},
  ): Promise<Admission> {
    const { perSecond, burst } = connection.limits;
    const throttle = options.throttle ?? true;
    // Nothing to decide (no rate limit, circuit or duplicate window, no version to check, no 429
    // seen here): no round trip.
    if (
      !perSecond &&
      !connection.circuit.enabled &&
      connection.dedupe.window <= 0 &&
      options.version === undefined &&
      !(throttle && this.throttledHere.has(connection.id))
    )
      return ADMITTED;
    const interval = perSecond ? 1000 / perSecond : 0;
    const tolerance = perSecond ? ((burst ?? Math.max(1, Math.floor(perSecond))) - 1) * interval : 0;
    const control = this.keys.control(connection.id);
    const [kind, a, b, c, d] = await this.admits.call({
      keys: [
        control,
        this.keys.controlProbe(connection.id),
        // The claim's key is hashed only when there is a duplicate window to claim in.
        connection.dedupe.window > 0 ? this.keys.dedupe(connection.id, emailHash(email)) : control,
        this.keys.connections,
      ],
      args: [
        now,
        deliveryId,
        interval,
        tolerance,
        HOLD_MAX_MS,
        connection.dedupe.window,
        probeLeaseMs(connection),
        connection.circuit.enabled ? 1 : 0,
        connection.id,
        options.version ?? '',
        throttle ? 1 : 0,
      ],
    });
    if (kind === 'stale') return a === undefined ? { kind } : { kind, record: a };
    if (kind === 'merged') return { kind, into: a! };
    if (kind === 'wait')
      return {
        kind,
        waitMs: Math.max(1, Math.ceil(Number(a))),
        reason: b as WaitReason,
        halfOpened: c === 'half_open',
      };
    return {
      kind: 'go',
      waitMs: Math.ceil(Number(a)),
      probe: b === '1',
      halfOpened: c === 'half_open',
      ...(d === '1' ? { reopening: true } : {}),
    };
  }

  /**
   * Records what the CRM's answer says about its health; returns the circuit state and any
   * transitions. With `attempt`, writes the delivery's attempt record in the same script.
   */
  async settle(
    connection: Connection,
    deliveryId: string,
    email: string,
    outcome: HealthOutcome,
    options: { releaseClaim: boolean; attempt?: AttemptWrite; reopened?: boolean },
    now: number,
  ): Promise<Settled> {
    if (options.reopened) this.throttledHere.delete(connection.id);
    const { circuit } = connection;
    const { attempt } = options;
    const control = this.keys.control(connection.id);
    // Only a final outcome gives the duplicate claim back (a delivered one keeps it for the window),
    // so only then is the claim's key needed, and the email hashed.
    const releaseClaim = options.releaseClaim && connection.dedupe.window > 0;
    const [state, consecutive, ...events] = await this.settles.call({
      keys: [
        control,
        this.keys.controlProbe(connection.id),
        releaseClaim ? this.keys.dedupe(connection.id, emailHash(email)) : control,
        // Declared even when unused (Redis wants every key a script may touch named up front).
        attempt?.list ?? control,
        attempt?.counter ?? control,
      ],
      args: [
        now,
        deliveryId,
        outcome,
        releaseClaim ? 1 : 0,
        circuit.enabled ? 1 : 0,
        circuit.failures,
        circuit.warnAfter,
        circuit.failureRatio ?? 0,
        circuit.minRequests,
        circuit.window,
        circuit.cooldown,
        attempt?.record ?? '',
        attempt?.keep ?? 0,
        attempt?.ttlMs ?? 0,
        options.reopened ? 1 : 0,
      ],
    });
    return {
      state: state as CircuitState,
      consecutiveFailures: Number(consecutive),
      events: events as ControlEvent[],
    };
  }

  /**
   * The CRM answered 429 and asked us to wait until `until`: every process holds the connection's
   * requests back until then, and then lets one request ask again before the configured rate resumes.
   */
  async throttle(connectionId: string, until: number): Promise<void> {
    this.throttledHere.add(connectionId);
    await this.scripted.urThrottle(this.keys.control(connectionId), Math.ceil(until));
  }

  /**
   * A batch split from refused batch `parent` was refused again the same way, as request
   * `requestId`: answers how many such requests `parent` has had (2: both halves were).
   */
  async halfRefused(connectionId: string, parent: string, requestId: string): Promise<number> {
    const key = `${this.keys.control(connectionId)}:split:${parent}`;
    const [, , count] = (await this.redis
      .multi()
      .sadd(key, requestId)
      .pexpire(key, SPLIT_MEMORY_MS)
      .scard(key)
      .exec())!;
    return Number(count?.[1] ?? 0);
  }

  /** Stops the splitting of the batches that came from `root`: the rest fail with `reason`. */
  async stopSplitting(connectionId: string, root: string, reason: string): Promise<void> {
    await this.redis.set(
      `${this.keys.control(connectionId)}:split-stopped:${root}`,
      reason,
      'PX',
      SPLIT_MEMORY_MS,
    );
  }

  /** Why the batches that came from `root` stopped splitting, if they did. */
  async splittingStopped(connectionId: string, root: string): Promise<string | undefined> {
    return (await this.redis.get(`${this.keys.control(connectionId)}:split-stopped:${root}`)) ?? undefined;
  }

  async status(connectionId: string): Promise<ControlStatus> {
    const [state, consecutive, failing, openUntil, changedAt, pausedBy, pausedAt, pauseReason] =
      await this.redis.hmget(
        this.keys.control(connectionId),
        'state',
        'consecutive',
        'failing',
        'openUntil',
        'changedAt',
        'pausedBy',
        'pausedAt',
        'pauseReason',
      );
    const circuit = (state ?? 'closed') as CircuitState;
    return {
      circuit,
      consecutiveFailures: Number(consecutive ?? 0),
      failing: failing === '1',
      ...(circuit === 'open' && openUntil ? { openUntil: new Date(Number(openUntil)).toISOString() } : {}),
      ...(changedAt ? { changedAt: new Date(Number(changedAt)).toISOString() } : {}),
      ...(pausedBy && pausedAt ? { paused: { by: pausedBy, at: pausedAt, reason: pauseReason ?? '' } } : {}),
    };
  }

  /** Remembers who paused the connection and why (the pause itself is the queue's). */
  async markPaused(connectionId: string, by: string, reason: string, at: Date): Promise<void> {
    await this.redis.hset(this.keys.control(connectionId), {
      pausedBy: by,
      pausedAt: at.toISOString(),
      pauseReason: reason,
    });
  }

  async clearPaused(connectionId: string): Promise<void> {
    await this.redis.hdel(this.keys.control(connectionId), 'pausedBy', 'pausedAt', 'pauseReason');
  }

  /** An operator closes the circuit by hand (the CRM is known to be back): counters start again. */
  async closeCircuit(connectionId: string, at: number): Promise<void> {
    await this.redis
      .multi()
      .hset(this.keys.control(connectionId), { state: 'closed', consecutive: 0, failing: 0, changedAt: at })
      .hdel(this.keys.control(connectionId), 'openUntil')
      .del(this.keys.controlProbe(connectionId))
      .exec();
  }
}

/** The probe's lease outlives its longest possible request, so a crashed prober frees it in time. */
function probeLeaseMs(connection: Connection): number {
  const { connect, headers, body } = connection.request.timeouts;
  return connect + headers + body + 5_000;
}
