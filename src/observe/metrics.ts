import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ControlStatus } from '../store/connection-control.js';

/** Seconds: a healthy CRM answers in tens of milliseconds, a struggling one in seconds. */
const ATTEMPT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds from acceptance to the CRM's yes: seconds when healthy, hours when a CRM was down. */
const END_TO_END_BUCKETS = [
  0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21_600, 86_400,
];

export const CIRCUIT_VALUE = { closed: 0, half_open: 1, open: 2 } as const;

/** What the scrape asks Redis for: each connection's backlog and control state. */
type Backlog = {
  connectionId: string;
  counts: Record<'waiting' | 'delayed' | 'active' | 'paused' | 'failed', number>;
  oldestPendingAgeSeconds: number;
  control: ControlStatus;
  queuePaused: boolean;
};
export interface BacklogSource {
  backlogs(): Promise<Backlog[]>;
}

/**
 * The engine's Prometheus metrics (names in docs/operations.md). Counters and histograms are this
 * process's; queue depth, oldest pending age and circuit state are read from Redis when scraped, so
 * every process reports the same, shared values for them.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly unsubscribesAccepted = new Counter({
    name: 'unsub_relay_unsubscribes_accepted_total',
    help: 'Unsubscribes answered 201 (stored with all their deliveries).',
    registers: [this.registry],
  });
  readonly unsubscribesRejected = new Counter({
    name: 'unsub_relay_unsubscribes_rejected_total',
    help: 'Ingest requests answered with an error, by HTTP status.',
    labelNames: ['status'],
    registers: [this.registry],
  });
  readonly deliveries = new Counter({
    name: 'unsub_relay_deliveries_total',
    help: 'Delivery outcomes by connection and verdict (success, success_already_done, merged, retry, rate_limited, fail, exhausted).',
    labelNames: ['connection', 'verdict'],
    registers: [this.registry],
  });
  readonly attemptSeconds = new Histogram({
    name: 'unsub_relay_attempt_duration_seconds',
    help: 'Duration of one HTTP exchange with the CRM.',
    labelNames: ['connection'],
    buckets: ATTEMPT_BUCKETS,
    registers: [this.registry],
  });
  readonly endToEndSeconds = new Histogram({
    name: 'unsub_relay_end_to_end_seconds',
    help: 'From the unsubscribe being accepted to the CRM confirming it.',
    labelNames: ['connection'],
    buckets: END_TO_END_BUCKETS,
    registers: [this.registry],
  });
  readonly rateLimitWaits = new Counter({
    name: 'unsub_relay_rate_limit_waits_total',
    help: 'Times a connection was held back: its own limit, the CRM asking to slow down (429), or its circuit.',
    labelNames: ['connection', 'reason'],
    registers: [this.registry],
  });
  readonly circuitTransitions = new Counter({
    name: 'unsub_relay_circuit_transitions_total',
    help: 'Circuit breaker state changes seen by this process.',
    labelNames: ['connection', 'to'],
    registers: [this.registry],
  });

  constructor(source?: BacklogSource, options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    if (!source) return;
    // One Redis read per scrape feeds all four gauges; the first gauge's collect starts it and the
    // others reuse it (prom-client calls collect for every gauge of a scrape, in order).
    let current: ReturnType<BacklogSource['backlogs']> | undefined;
    const read = () =>
      (current ??= source.backlogs().finally(() => setTimeout(() => (current = undefined), 0)));
    // Each gauge is reset and refilled from the same read at every scrape (a deleted connection's
    // series goes once its queue does).
    const gauge = (
      name: string,
      help: string,
      labelNames: string[],
      fill: (set: (labels: Record<string, string>, value: number) => void, backlog: Backlog) => void,
    ) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: [this.registry],
        async collect() {
          this.reset();
          for (const backlog of await read()) fill((labels, value) => this.set(labels, value), backlog);
        },
      });
    gauge(
      'unsub_relay_queue_depth',
      'Deliveries per connection and state (waiting, delayed, active, paused, failed).',
      ['connection', 'state'],
      (set, b) => {
        for (const [state, count] of Object.entries(b.counts))
          set({ connection: b.connectionId, state }, count);
      },
    );
    gauge(
      'unsub_relay_oldest_pending_age_seconds',
      'Age of the oldest delivery waiting to be sent, per connection (0 when none waits).',
      ['connection'],
      (set, b) => set({ connection: b.connectionId }, b.oldestPendingAgeSeconds),
    );
    gauge(
      'unsub_relay_circuit_state',
      'Circuit breaker per connection: 0 closed, 1 half-open (probing), 2 open.',
      ['connection'],
      (set, b) => set({ connection: b.connectionId }, CIRCUIT_VALUE[b.control.circuit]),
    );
    gauge(
      'unsub_relay_connection_paused',
      '1 while a connection is paused (by hand, or because it is disabled).',
      ['connection'],
      (set, b) => set({ connection: b.connectionId }, b.queuePaused ? 1 : 0),
    );
  }
}
