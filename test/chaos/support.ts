import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import { cleanPrefix, eventually } from '../helpers/redis.js';
import { redisAnswers } from '../../src/redis-bootstrap.js';
import { freePort, ROOT, type EngineProcess } from '../helpers/processes.js';

// Shared by the chaos files: a private redis-server to kill, an ingest client on a keep-alive
// pool, admin calls whose answers are kept (the secrets check greps them), and the figures each
// file records for docs/reliability.md.

export const ADMIN_TOKEN = 'chaos-admin-token-0123456789';
const RESULTS = path.join(ROOT, 'test/chaos/results');

/** A redis-server of the test's own (never the shared one on 6379), AOF on as docker-compose runs it. */
export interface OwnRedis {
  url: string;
  port: number;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startOwnRedis(dir: string): Promise<OwnRedis> {
  const port = await freePort();
  if (port === 6379) throw new Error('refusing to run a chaos Redis on the shared port 6379');
  await mkdir(dir, { recursive: true });
  let child: ChildProcess;
  const launch = async () => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'everysec',
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
    await eventually(`redis-server on ${port}`, () => redisAnswers(`redis://127.0.0.1:${port}`), 20_000);
  };
  const halt = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    kill: () => halt('SIGKILL'),
    restart: launch,
    stop: () => halt('SIGTERM'),
  };
}

export interface Answer {
  status: number;
  body: string;
}

/** HTTP on one keep-alive pool per origin: many requests without a socket each. */
export function client(url: string, connections = 8) {
  const pool = new Pool(url, { connections, pipelining: 1 });
  return {
    pool,
    async request(
      method: string,
      pathname: string,
      headers: Record<string, string> = {},
      body?: string | Buffer,
    ): Promise<Answer> {
      const response = await pool.request({
        method: method as 'GET',
        path: pathname,
        headers,
        ...(body === undefined ? {} : { body }),
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
      });
      return { status: response.statusCode, body: await response.body.text() };
    },
    close: () => pool.close(),
  };
}

/** The admin API, keeping every answer's text (the secrets check greps them all). */
export function adminClient(url: string) {
  const http = client(url, 2);
  const answers: string[] = [];
  const call = async (method: string, pathname: string, body?: unknown): Promise<Answer> => {
    const answer = await http.request(
      method,
      pathname,
      {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body === undefined ? undefined : JSON.stringify(body),
    );
    answers.push(`${method} ${pathname} ${answer.status}\n${answer.body}`);
    return answer;
  };
  return {
    answers,
    call,
    async json<T>(method: string, pathname: string, body?: unknown): Promise<T> {
      const answer = await call(method, pathname, body);
      if (answer.status >= 300) throw new Error(`${method} ${pathname}: ${answer.status} ${answer.body}`);
      return JSON.parse(answer.body) as T;
    },
    async createKey(account: string): Promise<string> {
      const answer = await call('POST', '/admin/v1/keys', { account });
      const parsed = JSON.parse(answer.body) as { key?: string };
      if (!parsed.key) throw new Error(`no key made: ${answer.status} ${answer.body}`);
      return parsed.key;
    },
    close: () => http.close(),
  };
}

export interface DeliveryView {
  id: string;
  unsubscribeId: string;
  status: string;
  attemptsMade: number;
  failedReason?: string;
  attempts?: Array<{ verdict: string; status?: number; errorCode?: string }>;
}

/** Polls each delivery until every one has a status in `wanted`; answers them. */
export async function settled(
  admin: ReturnType<typeof adminClient>,
  ids: string[],
  wanted: string[],
  timeoutMs: number,
): Promise<DeliveryView[]> {
  const done = new Map<string, DeliveryView>();
  return eventually(
    `${ids.length} deliveries ${wanted.join('/')}`,
    async () => {
      for (const id of ids) {
        if (done.has(id)) continue;
        const answer = await admin.call('GET', `/admin/v1/deliveries/${encodeURIComponent(id)}`);
        if (answer.status !== 200) return false;
        const view = JSON.parse(answer.body) as DeliveryView;
        if (!wanted.includes(view.status)) return false;
        done.set(id, view);
      }
      return ids.map((id) => done.get(id)!);
    },
    timeoutMs,
  );
}

/** Adds this file's figures to test/chaos/results/last.json (and prints them). */
export async function recordFigures(check: string, figures: Record<string, unknown>): Promise<void> {
  await mkdir(RESULTS, { recursive: true });
  const file = path.join(RESULTS, 'last.json');
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch {
    // first check of the run
  }
  const cpus = os.cpus();
  all.machine = {
    cpu: `${cpus[0]?.model.trim() ?? 'unknown'} × ${cpus.length}`,
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
  all[check] = { at: new Date().toISOString(), loadAverage: os.loadavg()[0], ...figures };
  await writeFile(file, `${JSON.stringify(all, null, 2)}\n`);
  console.log(`chaos ${check}: ${JSON.stringify(figures)}`);
}

/** The CRM request bodies' `email` fields (each connection here sends `{ email }` or `{ emails: [...] }`). */
export function emailsIn(body: string): string[] {
  try {
    const parsed = JSON.parse(body) as { email?: string; emails?: string[] };
    if (parsed.emails) return parsed.emails;
    return parsed.email ? [parsed.email] : [];
  } catch {
    return [];
  }
}

/** Counts of each value: how many times the CRM saw each email. */
export function counts(values: string[]): Map<string, number> {
  const seen = new Map<string, number>();
  for (const value of values) seen.set(value, (seen.get(value) ?? 0) + 1);
  return seen;
}

/** A connection sending `{ email }` to `url` + `pathname`, with quick retries; batched ones send `{ emails: [...] }`. */
export function chaosConnection(
  id: string,
  url: string,
  overrides: Partial<ConnectionInput> & { batched?: boolean } = {},
): ConnectionInput {
  const { batched, ...rest } = overrides;
  return {
    id,
    account: 'acme',
    name: `Chaos ${id}`,
    campaigns: '*',
    request: {
      method: 'POST',
      url: `${url}/${id}`,
      auth: { type: 'bearer', token: "{{secret 'CHAOS_CRM_TOKEN'}}" },
      body: { json: batched ? { emails: [{ $each: '{{email}}' }] } : { email: '{{email}}' } },
      timeouts: { connect: '2s', headers: '10s', body: '10s' },
    },
    retry: { attempts: 30, backoff: 'fixed', delay: '200ms', jitter: false, maxRetryAfter: '5s' },
    // Every unsubscribe here has its own address; the window would only hide a lost one.
    dedupe: { window: 0 },
    ...(batched ? { batch: { maxSize: 10, maxWait: '100ms' } } : {}),
    ...rest,
  };
}

/** The engine settings every chaos file shares; each adds its prefix, Redis and connections. */
export function engineEnv(extra: Record<string, string>): Record<string, string> {
  return {
    ADMIN_TOKEN,
    ALLOW_PRIVATE_TARGETS: 'true',
    SANDBOX: 'off',
    LOG_FORMAT: 'json',
    // A short lock, so a killed worker's deliveries are taken over in seconds.
    WORKER_LOCK_DURATION: '2s',
    SHUTDOWN_TIMEOUT: '3s',
    CHAOS_CRM_TOKEN: 'chaos-crm-token',
    ...extra,
  };
}

/** Posts an unsubscribe for each email with `parallel` requests at a time; answers status and id per email. */
export async function postAll(
  http: ReturnType<typeof client>,
  key: string,
  bodies: Array<Record<string, unknown>>,
  parallel = 4,
): Promise<Array<{ email: string; status: number; id: string }>> {
  const answers: Array<{ email: string; status: number; id: string }> = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++]!;
        const answer = await http.request(
          'POST',
          '/v1/unsubscribes',
          { authorization: key, 'content-type': 'application/json' },
          JSON.stringify(body),
        );
        const id = answer.status === 201 ? (JSON.parse(answer.body) as { id: string }).id : '';
        answers.push({ email: String(body.email), status: answer.status, id });
      }
    }),
  );
  return answers;
}

/**
 * Stops what a check started, whatever state its engines were left in: each engine still running,
 * each CRM, its temp directory and (on the shared Redis) its key prefix.
 */
export async function tearDown(parts: {
  engines: Array<EngineProcess | undefined>;
  closers?: Array<{ close(): Promise<void> } | { stop(): Promise<void> } | undefined>;
  dir?: string;
  prefix?: string;
}): Promise<void> {
  for (const engine of parts.engines)
    if (engine && engine.child.exitCode === null && engine.child.signalCode === null) {
      engine.child.kill('SIGTERM');
      await engine.exited;
    }
  for (const closer of parts.closers ?? []) {
    if (closer && 'close' in closer) await closer.close();
    else if (closer) await closer.stop();
  }
  if (parts.dir) await rm(parts.dir, { recursive: true, force: true });
  if (parts.prefix) await cleanPrefix(parts.prefix);
}
