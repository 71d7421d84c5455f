import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { nowMs, sleep } from './stats.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const ENGINE_BIN = path.join(ROOT, 'bin/unsub-relay.js');
const PARENT_WATCH = pathToFileURL(path.join(ROOT, 'bench/parent-watch.js')).href;
/** Kept per child for error messages: the tail of what it printed. */
const LOG_TAIL_BYTES = 64 * 1024;

export interface Child {
  name: string;
  pid: number;
  process: ChildProcess;
  /** Wall time (ms) just before the process was spawned. */
  spawnedAt: number;
  logs(): string;
  exited: Promise<number | null>;
  hasExited(): boolean;
  /** The next stdout line that parses as JSON, within `timeoutMs`. */
  jsonLine<T>(timeoutMs: number): Promise<T>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<Child>();
let refusing = false;

/** From now on spawnNode throws: the harness is shutting down. */
export function refuseNewChildren(): void {
  refusing = true;
}

/** Spawns `node [nodeArgs] ...` from the repository root, with the parent watch preloaded. */
export function spawnNode(name: string, args: string[], env: Record<string, string | undefined>): Child {
  if (refusing) throw new Error(`not starting ${name}: the benchmark is stopping`);
  const spawnedAt = nowMs();
  const child = spawn(process.execPath, ['--import', PARENT_WATCH, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not start ${name}`);
  let tail = '';
  // BENCH_LOG_DIR keeps every process's whole output (to see why a run went wrong); otherwise only a
  // tail is kept, shown when a process fails.
  const logFile = process.env.BENCH_LOG_DIR
    ? createWriteStream(
        path.join(process.env.BENCH_LOG_DIR, `${name.replace(/[^\w.-]+/g, '_')}-${child.pid}.log`),
      )
    : undefined;
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-LOG_TAIL_BYTES);
    logFile?.write(chunk);
  };
  const lines: string[] = [];
  const lineWaiters: Array<() => void> = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    keep(chunk);
    partial += chunk.toString();
    let at: number;
    while ((at = partial.indexOf('\n')) >= 0) {
      lines.push(partial.slice(0, at));
      partial = partial.slice(at + 1);
      if (lines.length > 1_000) lines.shift();
    }
    for (const wake of lineWaiters.splice(0)) wake();
  });
  child.stderr!.on('data', keep);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code, signal) => {
      logFile?.end();
      exitCode = code ?? (signal ? -1 : null);
      running.delete(handle);
      for (const wake of lineWaiters.splice(0)) wake();
      resolve(code);
    }),
  );
  const handle: Child = {
    name,
    pid: child.pid,
    process: child,
    spawnedAt,
    logs: () => tail,
    exited,
    hasExited: () => exitCode !== undefined,
    async jsonLine<T>(timeoutMs: number): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        while (lines.length > 0) {
          const line = lines.shift()!.trim();
          if (!line.startsWith('{')) continue;
          try {
            return JSON.parse(line) as T;
          } catch {
            // not ours (a log line that looks like JSON but is cut): keep reading
          }
        }
        if (exitCode !== undefined) throw new Error(`${name} exited (${exitCode}) early:\n${tail}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`${name} printed no JSON line within ${timeoutMs} ms:\n${tail}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          lineWaiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    async stop(graceMs = 10_000) {
      if (exitCode !== undefined) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  running.add(handle);
  return handle;
}

/** Runs a TypeScript file of bench/ as its own process (through tsx). */
export function spawnScript(
  name: string,
  script: string,
  env: Record<string, string | undefined> = {},
  args: string[] = [],
): Child {
  return spawnNode(name, ['--import', 'tsx', path.join(ROOT, 'bench', script), ...args], env);
}

/** Stops every process the harness started that is still running. */
export async function stopAll(graceMs = 5_000): Promise<void> {
  await Promise.all([...running].map((child) => child.stop(graceMs)));
}

/** Kills what is left at once (last resort, e.g. from an 'exit' handler, which cannot wait). */
export function killAllNow(): void {
  for (const child of running) child.process.kill('SIGKILL');
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `check` every `everyMs` until it returns true; throws after `timeoutMs` or when `watch` exits. */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  watch?: Child,
  everyMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (watch?.hasExited())
      throw new Error(`${watch.name} exited while waiting for ${what}:\n${watch.logs()}`);
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await sleep(everyMs);
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${String(last)})` : ''}${
      watch ? `\n${watch.name} output:\n${watch.logs()}` : ''
    }`,
  );
}

const CLOCK_TICKS_PER_SECOND = 100;

/** RSS (bytes) and CPU time used so far (ms, user + system) of a live process, from /proc. */
export function readProc(pid: number): { rssBytes: number; cpuMs: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3; utime/stime are 14/15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return {
      rssBytes: rss ? Number(rss[1]) * 1024 : Number.NaN,
      cpuMs: (ticks * 1000) / CLOCK_TICKS_PER_SECOND,
    };
  } catch {
    return undefined;
  }
}
