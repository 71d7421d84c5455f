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
export interface BacklogSource {
  backlogs(): Promise<
    {
      connectionId: string;
      counts: Record<'waiting' | 'delayed' | 'active' | 'paused' | 'failed', number>;
      oldestPendingAgeSeconds: number;
      control: ControlStatus;
      queuePaused: boolean;
    }[]
  >;
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
    new Gauge({
      name: 'unsub_relay_queue_depth',
      help: 'Deliveries per connection and state (waiting, delayed, active, paused, failed).',
      labelNames: ['connection', 'state'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const backlog of await read())
          for (const [state, count] of Object.entries(backlog.counts))
            this.set({ connection: backlog.connectionId, state }, count);
      },
    });
    new Gauge({
      name: 'unsub_relay_oldest_pending_age_seconds',
      help: 'Age of the oldest delivery waiting to be sent, per connection (0 when none waits).',
      labelNames: ['connection'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const backlog of await read())
          this.set({ connection: backlog.connectionId }, backlog.oldestPendingAgeSeconds);
      },
    });
    new Gauge({
      name: 'unsub_relay_circuit_state',
      help: 'Circuit breaker per connection: 0 closed, 1 half-open (probing), 2 open.',
      labelNames: ['connection'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const backlog of await read())
          this.set({ connection: backlog.connectionId }, CIRCUIT_VALUE[backlog.control.circuit]);
      },
    });
    new Gauge({
      name: 'unsub_relay_connection_paused',
      help: '1 while a connection is paused (by hand, or because it is disabled).',
      labelNames: ['connection'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const backlog of await read())
          this.set({ connection: backlog.connectionId }, backlog.queuePaused ? 1 : 0);
      },
    });
  }
}
