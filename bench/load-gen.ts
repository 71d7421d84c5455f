/**
 * Load generator for POST /v1/unsubscribes, run as its own process (keep-alive undici Pool).
 *
 *   closed: `connections` clients each send their next request as soon as the last one is answered,
 *           for `durationMs` (maximum rate; ingest scenario).
 *   open:   request i is scheduled at start + i/rate, whatever the server does (fixed rate;
 *           latency scenarios). A request that leaves late (busy pool, busy generator) keeps its
 *           scheduled time, which it carries in `attributes.scheduledAt` to the CRM.
 *
 * Config is one JSON argument; the summary is one JSON line on stdout.
 */
import { Pool } from 'undici';
import { nowMs, percentiles, sleep } from './lib/stats.js';

export interface LoadConfig {
  url: string;
  apiKey: string;
  mode: 'closed' | 'open';
  connections: number;
  durationMs: number;
  /** open mode: requests per second. */
  rate?: number;
  emailPrefix: string;
  campaign?: string;
  /** How long to wait for answers still in flight at the end. */
  drainTimeoutMs?: number;
}

export interface LoadSummary {
  mode: 'closed' | 'open';
  sent: number;
  answered: number;
  accepted: number;
  statuses: Record<string, number>;
  errors: number;
  errorSamples: string[];
  unanswered: number;
  /** closed: first send → last answer; open: the schedule's length. */
  durationMs: number;
  acceptedPerSecond: number;
  /** HTTP latency of answered requests, from when each left. */
  latency: ReturnType<typeof percentiles>;
  /** open mode: how late requests left against their schedule. */
  lag?: ReturnType<typeof percentiles>;
}

const config = JSON.parse(process.argv[2] ?? '{}') as LoadConfig;
const origin = new URL(config.url).origin;
const pool = new Pool(origin, {
  connections: config.connections,
  pipelining: 1,
  keepAliveTimeout: 30_000,
  keepAliveMaxTimeout: 60_000,
});
const statuses: Record<string, number> = {};
const latencies: number[] = [];
const lags: number[] = [];
const errorSamples: string[] = [];
let sent = 0;
let answered = 0;
let accepted = 0;
let errors = 0;
let lastAnswer = 0;

async function send(i: number, scheduledAt: number): Promise<void> {
  const leftAt = nowMs();
  if (config.mode === 'open') lags.push(leftAt - scheduledAt);
  sent += 1;
  const body = JSON.stringify({
    email: `${config.emailPrefix}-${i}@bench.example`,
    campaign: config.campaign ?? 'bench',
    source: 'bench',
    attributes: { scheduledAt: scheduledAt.toFixed(3) },
  });
  try {
    const response = await pool.request({
      path: new URL(config.url).pathname,
      method: 'POST',
      headers: { authorization: config.apiKey, 'content-type': 'application/json' },
      body,
    });
    await response.body.text();
    const at = nowMs();
    lastAnswer = at;
    answered += 1;
    latencies.push(at - leftAt);
    statuses[response.statusCode] = (statuses[response.statusCode] ?? 0) + 1;
    if (response.statusCode === 201) accepted += 1;
  } catch (error) {
    errors += 1;
    if (errorSamples.length < 5) errorSamples.push(String(error));
  }
}

async function closedLoop(): Promise<number> {
  const started = nowMs();
  const end = started + config.durationMs;
  let next = 0;
  await Promise.all(
    Array.from({ length: config.connections }, async () => {
      while (nowMs() < end) {
        const i = next++;
        await send(i, nowMs());
      }
    }),
  );
  return lastAnswer - started;
}

async function openLoop(): Promise<number> {
  const rate = config.rate ?? 100;
  const interval = 1000 / rate;
  const total = Math.round((rate * config.durationMs) / 1000);
  const started = nowMs() + 5;
  const inFlight = new Set<Promise<void>>();
  let i = 0;
  while (i < total) {
    const now = nowMs();
    while (i < total && started + i * interval <= now) {
      const request = send(i, started + i * interval);
      inFlight.add(request);
      void request.finally(() => inFlight.delete(request));
      i += 1;
    }
    const nextAt = started + i * interval;
    await sleep(Math.max(0, Math.min(nextAt - nowMs(), 50)));
  }
  const drained = await Promise.race([
    Promise.all(inFlight).then(() => true),
    sleep(config.drainTimeoutMs ?? 30_000).then(() => false),
  ]);
  if (!drained) process.stderr.write(`load-gen: ${inFlight.size} requests still unanswered\n`);
  return total * interval;
}

const durationMs = config.mode === 'closed' ? await closedLoop() : await openLoop();
const summary: LoadSummary = {
  mode: config.mode,
  sent,
  answered,
  accepted,
  statuses,
  errors,
  errorSamples,
  unanswered: sent - answered - errors,
  durationMs,
  acceptedPerSecond: accepted / (durationMs / 1000),
  latency: percentiles(latencies),
  ...(config.mode === 'open' ? { lag: percentiles(lags) } : {}),
};
process.stdout.write(`${JSON.stringify(summary)}\n`);
await Promise.race([pool.close(), sleep(2_000)]);
process.exit(0);
