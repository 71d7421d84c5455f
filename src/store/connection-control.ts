import { emailKey } from '../domain/unsubscribe.js';
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Connection, Limits } from '../config/connection-schema.js';
import { appendAttemptLua, type AttemptWrite } from './attempt-store.js';
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

// KEYS: control hash, probe lease, dedupe claim, connections hash. ARGV: now, delivery id, emission
// interval ms (0: no rate), burst tolerance ms, longest wait a worker may hold a job for, dedupe
// window ms (0: off), probe lease ms, circuit on, connection id, the connection version the caller
// holds ('': do not check).
// Answers {'go', waitMs, probe, transition} | {'wait', waitMs, reason, transition} | {'merged', holder}
// | {'stale', current record or nothing}.
// The version check rides along so a worker needs no separate read of its connection per delivery:
// the stored record starts with its version (ConnectionStore's PUT_SCRIPT splices it in first).
const ADMIT_SCRIPT = `
if ARGV[10] ~= '' then
  local record = redis.call('HGET', KEYS[4], ARGV[9])
  if not record then return {'stale'} end
  if string.match(record, '^{"version":(%d+),') ~= ARGV[10] then return {'stale', record} end
end
local now = tonumber(ARGV[1])
local id = ARGV[2]
local interval = tonumber(ARGV[3])
local tolerance = tonumber(ARGV[4])
local holdMax = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local lease = tonumber(ARGV[7])
if window > 0 then
  local holder = redis.call('GET', KEYS[3])
  if holder and holder ~= id then return {'merged', holder} end
end
local transition = ''
local probe = 0
if ARGV[8] == '1' then
  local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
  if state == 'open' then
    local reopen = tonumber(redis.call('HGET', KEYS[1], 'openUntil') or '0')
    if now < reopen then return {'wait', tostring(reopen - now), 'circuit_open', ''} end
    redis.call('HSET', KEYS[1], 'state', 'half_open', 'changedAt', tostring(now))
    state = 'half_open'
    transition = 'half_open'
  end
  if state == 'half_open' then
    if not redis.call('SET', KEYS[2], id, 'NX', 'PX', lease) then
      if redis.call('GET', KEYS[2]) ~= id then
        local left = redis.call('PTTL', KEYS[2])
        if left < 0 or left > 1000 then left = 1000 end
        return {'wait', tostring(left), 'circuit_probe', transition}
      end
    end
    probe = 1
  end
end
local wait = 0
if interval > 0 then
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
  if tat < now then tat = now end
  wait = tat - tolerance - now
  if wait < 0 then wait = 0 end
  if wait > holdMax then
    if probe == 1 then redis.call('DEL', KEYS[2]) end
    return {'wait', tostring(wait), 'rate_limit', transition}
  end
  redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', tat + interval))
end
if window > 0 then redis.call('SET', KEYS[3], id, 'PX', window) end
return {'go', tostring(wait), tostring(probe), transition}
`;

// KEYS: control hash, probe lease, dedupe claim, attempt list, attempt counter. ARGV: now, delivery
// id, outcome (up | down | neutral), release the dedupe claim, circuit on, failures, warnAfter,
// failure ratio (0: off), minRequests, window ms, cooldown ms, attempt record ('': none), attempt
// records kept, attempt TTL ms.
// Answers {state, consecutive failures, event...}. Outcomes are counted in 10 ring slots over the
// window, so the ratio costs 10 fields, not one entry per request. The delivery's attempt record
// rides along: one round trip per delivery outcome.
const SETTLE_SCRIPT = `
if ARGV[12] ~= '' then
${appendAttemptLua({ list: 'KEYS[4]', counter: 'KEYS[5]', record: 'ARGV[12]', keep: 'ARGV[13]', ttlMs: 'ARGV[14]' })}
end
local now = tonumber(ARGV[1])
local id = ARGV[2]
local outcome = ARGV[3]
if ARGV[4] == '1' and redis.call('GET', KEYS[3]) == id then redis.call('DEL', KEYS[3]) end
if redis.call('GET', KEYS[2]) == id then redis.call('DEL', KEYS[2]) end
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local consecutive = tonumber(redis.call('HGET', KEYS[1], 'consecutive') or '0')
if ARGV[5] ~= '1' or outcome == 'neutral' then return {state, consecutive} end
local events = {}
local slotMs = tonumber(ARGV[10]) / 10
local n = math.floor(now / slotMs)
local slot = n % 10
if tonumber(redis.call('HGET', KEYS[1], 'n' .. slot) or '-1') ~= n then
  redis.call('HSET', KEYS[1], 'n' .. slot, n, 'u' .. slot, 0, 'd' .. slot, 0)
end
if outcome == 'up' then
  redis.call('HINCRBY', KEYS[1], 'u' .. slot, 1)
  consecutive = 0
  redis.call('HSET', KEYS[1], 'consecutive', 0)
  if state ~= 'closed' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'changedAt', tostring(now))
    state = 'closed'
    table.insert(events, 'circuit_closed')
  end
  if redis.call('HGET', KEYS[1], 'failing') == '1' then
    redis.call('HSET', KEYS[1], 'failing', 0)
    table.insert(events, 'connection_recovered')
  end
else
  redis.call('HINCRBY', KEYS[1], 'd' .. slot, 1)
  consecutive = redis.call('HINCRBY', KEYS[1], 'consecutive', 1)
  if consecutive >= tonumber(ARGV[7]) and redis.call('HGET', KEYS[1], 'failing') ~= '1' then
    redis.call('HSET', KEYS[1], 'failing', 1)
    table.insert(events, 'connection_failing')
  end
  local open = state == 'half_open'
  if state == 'closed' then
    if consecutive >= tonumber(ARGV[6]) then open = true
    elseif tonumber(ARGV[8]) > 0 then
      local up, down = 0, 0
      for i = 0, 9 do
        if tonumber(redis.call('HGET', KEYS[1], 'n' .. i) or '-1') > n - 10 then
          up = up + tonumber(redis.call('HGET', KEYS[1], 'u' .. i) or '0')
          down = down + tonumber(redis.call('HGET', KEYS[1], 'd' .. i) or '0')
        end
      end
      if up + down >= tonumber(ARGV[9]) and down / (up + down) >= tonumber(ARGV[8]) then open = true end
    end
  end
  if open then
    redis.call('HSET', KEYS[1], 'state', 'open', 'openUntil', tostring(now + tonumber(ARGV[11])),
      'changedAt', tostring(now))
    state = 'open'
    table.insert(events, 'circuit_opened')
  end
end
local answer = {state, consecutive}
for _, event in ipairs(events) do table.insert(answer, event) end
return answer
`;

const ADMITTED: Admission = Object.freeze({ kind: 'go', waitMs: 0, probe: false, halfOpened: false });

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

export type Admission =
  /** Send after `waitMs` (the reserved rate-limit slot); `probe` when this is the half-open circuit's one probe. */
  | { kind: 'go'; waitMs: number; probe: boolean; halfOpened: boolean }
  /** Not now: the whole connection waits `waitMs` (the circuit is open, the probe is out, or no token). */
  | {
      kind: 'wait';
      waitMs: number;
      reason: 'circuit_open' | 'circuit_probe' | 'rate_limit';
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
}

const ADMIT_KEYS = 4;
const ADMIT_ARGS = 10;
const SETTLE_KEYS = 5;
const SETTLE_ARGS = 14;

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
    const scripted = redis as unknown as WithControlScripts;
    // `admit` and `settle` below build each item with exactly the script's number of keys and
    // arguments (the test 'admissions made in one turn' would see a shift).
    this.admits = new TurnBatch(eachItemCall(redis, scripted.urAdmitEach, ADMIT_KEYS));
    this.settles = new TurnBatch(eachItemCall(redis, scripted.urSettleEach, SETTLE_KEYS));
  }
  private readonly admits: TurnBatch<ScriptItem, string[]>;
  private readonly settles: TurnBatch<ScriptItem, (string | number)[]>;

  /**
   * May this delivery go now? Takes the rate-limit slot, the probe and the duplicate claim when it
   * may. With `version`, first checks that it is still the connection's stored version, and takes
   * nothing (answers `stale`) when it is not.
   */
  async admit(
    connection: Connection,
    deliveryId: string,
    email: string,
    now: number,
    options: { version?: number } = {},
  ): Promise<Admission> {
    const { perSecond, burst } = connection.limits;
    // Nothing to decide (no rate limit, circuit or duplicate window, no version to check): no round trip.
    if (
      !perSecond &&
      !connection.circuit.enabled &&
      connection.dedupe.window <= 0 &&
      options.version === undefined
    )
      return ADMITTED;
    const interval = perSecond ? 1000 / perSecond : 0;
    const tolerance = perSecond ? ((burst ?? Math.max(1, Math.floor(perSecond))) - 1) * interval : 0;
    const control = this.keys.control(connection.id);
    const [kind, a, b, c] = await this.admits.call({
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
      ],
    });
    if (kind === 'stale') return a === undefined ? { kind } : { kind, record: a };
    if (kind === 'merged') return { kind, into: a! };
    if (kind === 'wait')
      return {
        kind,
        waitMs: Math.max(1, Math.ceil(Number(a))),
        reason: b as 'circuit_open' | 'circuit_probe' | 'rate_limit',
        halfOpened: c === 'half_open',
      };
    return { kind: 'go', waitMs: Math.ceil(Number(a)), probe: b === '1', halfOpened: c === 'half_open' };
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
    options: { releaseClaim: boolean; attempt?: AttemptWrite },
    now: number,
  ): Promise<Settled> {
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
      ],
    });
    return {
      state: state as CircuitState,
      consecutiveFailures: Number(consecutive),
      events: events as ControlEvent[],
    };
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
