import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { eventually } from './redis.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/unsub-relay.js');
// The benchmark's parent watch: an engine whose test runner was killed stops by itself instead of
// polling Redis (and recreating its queue's keys) until someone notices.
const PARENT_WATCH = pathToFileURL(path.join(ROOT, 'bench/parent-watch.js')).href;

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs the real CLI (`unsub-relay ...`) to completion. */
export function cli(
  args: string[],
  env: Record<string, string>,
): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

export interface EngineProcess {
  child: ChildProcess;
  url: string;
  logs: () => string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
}

/** Starts `unsub-relay start` as a child process and waits until /readyz says it is ready. */
export async function spawnEngine(env: Record<string, string>): Promise<EngineProcess> {
  const port = Number(env.PORT ?? (await freePort()));
  const child = spawn(process.execPath, ['--import', PARENT_WATCH, BIN, 'start'], {
    cwd: ROOT,
    env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  await eventually(
    `engine ready on ${url}`,
    async () => {
      if (child.exitCode !== null) throw new Error(`engine exited with ${child.exitCode}:\n${output}`);
      const response = await fetch(`${url}/readyz`);
      return response.ok;
    },
    20_000,
  );
  return { child, url, logs: () => output, exited };
}

/**
 * Runs the real CLI without blocking this process: `cli()` waits synchronously, so a fake CRM living
 * in this process could not answer a command that sends (`test`). Killed after 60 s.
 */
export function cliAsync(
  args: string[],
  env: Record<string, string>,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    }),
  );
}

/** A new API key for `account`, made with the real CLI against a running engine. */
export function createKey(env: Record<string, string>, adminUrl: string, account = 'acme'): string {
  return cli(['keys', 'create', '--account', account], { ...env, ADMIN_URL: adminUrl })
    .stdout.trim()
    .split('\n')
    .at(-1)!;
}

/** POST /v1/unsubscribes for each body in turn; answers each response's status and id. */
export async function postUnsubscribes(
  url: string,
  key: string,
  bodies: unknown[],
): Promise<Array<{ status: number; id: string }>> {
  const answers: Array<{ status: number; id: string }> = [];
  for (const body of bodies) {
    const response = await fetch(`${url}/v1/unsubscribes`, {
      method: 'POST',
      headers: { authorization: key, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    answers.push({ status: response.status, id: ((await response.json()) as { id?: string }).id ?? '' });
  }
  return answers;
}
