import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import type { LoadConfig, LoadSummary } from '../load-gen.js';
import { BENCH_CRM_KEY, writeConnectionsDir } from './connections.js';
import {
  ENGINE_BIN,
  freePort,
  refuseNewChildren,
  spawnNode,
  spawnScript,
  stopAll,
  until,
  type Child,
} from './processes.js';
import { benchRedis, deleteByPrefix } from './redis.js';
import type { BenchOptions } from './types.js';

export interface CrmStats {
  tag: string;
  count: number;
  unique: number;
  authFailures: number;
  badBodies: number;
  first?: number;
  last?: number;
  latency?: { count: number; p50: number; p95: number; p99: number; max: number; mean: number };
  /** The worst latency in each second of arrivals (ms), first second first. */
  slowestBySecond?: number[];
}

/** The stand-in CRM process (bench/crm-server.ts) and its control endpoints. */
export class Crm {
  constructor(
    readonly child: Child,
    readonly url: string,
  ) {}

  private async get<T>(what: string, tag: string): Promise<T> {
    const response = await fetch(`${this.url}/${what}?tag=${encodeURIComponent(tag)}`);
    return (await response.json()) as T;
  }

  count(tag: string): Promise<{ count: number; unique: number }> {
    return this.get('_count', tag);
  }

  stats(tag: string): Promise<CrmStats> {
    return this.get('_stats', tag);
  }

  async reset(): Promise<void> {
    await fetch(`${this.url}/_reset`, { method: 'POST' });
  }

  /** Waits until `n` distinct deliveries arrived under `tag`; fails after `timeoutMs` or if `watch` exits. */
  async waitFor(tag: string, n: number, timeoutMs: number, watch?: Child): Promise<CrmStats> {
    await until(
      `${n} deliveries at the CRM (${tag})`,
      async () => (await this.count(tag)).unique >= n,
      timeoutMs,
      watch,
    );
    return this.stats(tag);
  }
}

export interface EngineOptions {
  prefix: string;
  connections: ConnectionInput[];
  roles: 'api' | 'worker' | 'api,worker';
  /** Adds `--cpu-prof --cpu-prof-dir=<dir>` to the engine's node arguments. */
  cpuProfDir?: string;
  env?: Record<string, string>;
}

export interface Engine extends Child {
  url?: string;
  connectionsDir: string;
}

/** What every scenario gets: options, Redis, the CRM, and ways to start processes that clean up after themselves. */
export class BenchContext {
  private prefixes = new Set<string>();
  private counter = 0;
  readonly adminToken = 'bench-admin-token-0123456789';

  private constructor(
    readonly options: BenchOptions,
    readonly runId: string,
    readonly tmpDir: string,
    readonly redis: Redis,
    readonly crm: Crm,
  ) {}

  static async create(options: BenchOptions, runId: string): Promise<BenchContext> {
    const tmpDir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-bench-'));
    const redis = benchRedis(options.redisUrl);
    await redis.ping();
    const crm = await BenchContext.spawnCrm('crm');
    return new BenchContext(options, runId, tmpDir, redis, crm);
  }

  private static async spawnCrm(name: string): Promise<Crm> {
    const child = spawnScript(name, 'crm-server.ts', { BENCH_CRM_KEY });
    const { port } = await child.jsonLine<{ port: number }>(20_000);
    return new Crm(child, `http://127.0.0.1:${port}`);
  }

  /** Another CRM process (e.g. one that never answers, for isolation); stop it with `crm.child.stop()`. */
  startCrm(name: string): Promise<Crm> {
    return BenchContext.spawnCrm(name);
  }

  log(message: string): void {
    process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
  }

  /** A Redis prefix no one else uses, deleted by `cleanPrefix` or at the end of the run at the latest. */
  prefix(name: string): string {
    const prefix = `bench:${this.runId}:${name}:${++this.counter}`;
    this.prefixes.add(prefix);
    return prefix;
  }

  /**
   * A prefix as short as an install's (REDIS_PREFIX defaults to `ur`), still unique: for the memory
   * scenario, where every queued delivery carries it in three key names.
   */
  shortPrefix(): string {
    const prefix = `b${randomBytes(4).readUInt32BE(0).toString(36).padStart(6, '0').slice(-5)}`;
    this.prefixes.add(prefix);
    return prefix;
  }

  async cleanPrefix(prefix: string): Promise<void> {
    await deleteByPrefix(this.redis, prefix);
    this.prefixes.delete(prefix);
  }

  /** `node bin/unsub-relay.js start` with bench settings; waits for /readyz when it serves the API. */
  async startEngine(options: EngineOptions): Promise<Engine> {
    const connectionsDir = await writeConnectionsDir(this.tmpDir, options.connections);
    const port = await freePort();
    const nodeArgs = options.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`] : [];
    const child = spawnNode(`engine(${options.roles})`, [...nodeArgs, ENGINE_BIN, 'start'], {
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: this.options.redisUrl,
      REDIS_PREFIX: options.prefix,
      CONNECTIONS_DIR: connectionsDir,
      ALLOW_PRIVATE_TARGETS: 'true',
      SANDBOX: 'off',
      LOG_LEVEL: process.env.BENCH_ENGINE_LOG_LEVEL ?? 'warn',
      LOG_FORMAT: 'json',
      ADMIN_TOKEN: this.adminToken,
      ROLES: options.roles,
      WORKER_CONCURRENCY: String(this.options.concurrency),
      SHUTDOWN_TIMEOUT: '5s',
      BENCH_CRM_KEY,
      ...options.env,
    });
    const engine: Engine = Object.assign(child, { connectionsDir });
    if (options.roles.includes('api')) {
      const url = `http://127.0.0.1:${port}`;
      await until(
        `engine ready on ${url}`,
        async () => (await fetch(`${url}/readyz`)).ok,
        30_000,
        child,
        100,
      );
      engine.url = url;
    }
    return engine;
  }

  /** Runs the load generator (bench/load-gen.ts) to completion and returns its summary. */
  async loadGen(config: LoadConfig): Promise<LoadSummary> {
    const child = spawnScript('load-gen', 'load-gen.ts', {}, [JSON.stringify(config)]);
    try {
      return await child.jsonLine<LoadSummary>(
        config.durationMs + (config.drainTimeoutMs ?? 30_000) + 20_000,
      );
    } finally {
      await child.stop(2_000);
    }
  }

  private closing: Promise<void> | undefined;

  /**
   * Stops every process still running (and refuses new ones), deletes every prefix not yet cleaned,
   * removes the temp dir. Safe to call twice and while a scenario is still running (an abort): the
   * scenario's client is cut off first and the cleanup uses a fresh one, so nothing lands after it.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      refuseNewChildren();
      await stopAll();
      this.redis.disconnect();
      const cleaner = benchRedis(this.options.redisUrl);
      try {
        for (const prefix of [...this.prefixes]) {
          await deleteByPrefix(cleaner, prefix);
          this.prefixes.delete(prefix);
        }
      } finally {
        cleaner.disconnect();
        await rm(this.tmpDir, { recursive: true, force: true });
      }
    })();
    return this.closing;
  }

  /** Prefixes not cleaned yet (for an emergency cleanup from a signal handler). */
  pendingPrefixes(): string[] {
    return [...this.prefixes];
  }
}
