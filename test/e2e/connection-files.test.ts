import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, writeConnections } from '../helpers/engine.js';
import { cli, spawnEngine, type EngineProcess } from '../helpers/processes.js';
import { cleanPrefix, eventually, testRedis, uniquePrefix } from '../helpers/redis.js';
import { keyspace } from '../../src/store/keys.js';

/**
 * Issue 18: a file never silently undoes what an operator did. The engine is a real process, restarted
 * between steps as an operator would; the CLI is the real command.
 */
describe('connection files and the store: the three-way apply, end to end', () => {
  const prefix = uniquePrefix('e2e-connection-files');
  const keys = keyspace(prefix);
  const env = {
    REDIS_PREFIX: prefix,
    ALLOW_PRIVATE_TARGETS: 'true',
    SANDBOX: 'off',
    TEST_CRM_TOKEN: 'e2e-connection-files-token',
    ADMIN_TOKEN: 'test-admin-token-0123456789',
    UNSUB_RELAY_OPERATOR: 'jane@cli',
  };
  let crm: FakeCrm;
  let dir: string;
  let engine: EngineProcess | undefined;
  const run = (args: string[]) => cli(args, { ...env, ADMIN_URL: engine!.url });
  const restart = async () => {
    if (engine) {
      engine.child.kill('SIGTERM');
      await engine.exited;
    }
    engine = await spawnEngine({ ...env, CONNECTIONS_DIR: dir, LOG_LEVEL: 'info' });
  };
  const show = () =>
    JSON.parse(run(['connections', 'show', 'acme-crm', '--json']).stdout) as {
      version: number;
      source: string;
      connection: { name: string; campaigns: string[] };
    };
  const write = (overrides: Record<string, unknown>) =>
    writeConnections(dir, [crmConnection('acme-crm', crm.url, { campaigns: ['c1'], ...overrides })]);

  beforeAll(async () => {
    crm = await startFakeCrm(() => ({ status: 200, body: '{"ok":true}' }));
    dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-e2e-files-'));
    await write({});
    await restart();
  }, 60_000);

  afterAll(async () => {
    engine?.child.kill('SIGTERM');
    await engine?.exited;
    await crm?.close();
    await rm(dir, { recursive: true, force: true });
    await cleanPrefix(prefix);
  });

  it('a campaign linked from the CLI stays linked when the file changes another field and the engine restarts', async () => {
    expect(run(['link', 'acme-crm', 'c2']).status).toBe(0);
    await write({ name: 'Acme, renamed in the file' });
    await restart();
    const now = show();
    expect(now.connection.campaigns).toEqual(['c1', 'c2']);
    expect(now.connection.name).toBe('Acme, renamed in the file');
    expect(now.source).toMatch(/^file .*acme-crm\.yaml \(sha256 [0-9a-f]{12}\) via start/);
    const versions = JSON.parse(run(['connections', 'versions', 'acme-crm', '--json']).stdout) as Array<{
      source: string;
    }>;
    expect(versions.map((v) => v.source)).toEqual([
      expect.stringMatching(/^file .*acme-crm\.yaml \(sha256 [0-9a-f]{12}\) via start \(.+\)$/),
      'cli (jane@cli)',
      expect.stringMatching(/^file .*acme-crm\.yaml \(sha256 [0-9a-f]{12}\) via start \(.+\)$/),
    ]);
  }, 180_000);

  it('a field changed in the file and through the API is a conflict: warned at start, in status and events, apply fails until --force', async () => {
    const put = await fetch(`${engine!.url}/admin/v1/connections/acme-crm`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...show().connection, name: 'Acme, renamed through the API' }),
    });
    expect(put.status).toBe(200);
    await write({ name: 'Acme, renamed in the file again' });
    await restart();
    expect(show().connection.name).toBe('Acme, renamed through the API');
    expect(engine!.logs()).toMatch(
      /acme-crm\.yaml: connection acme-crm not applied: name changed in the file and through the admin API/,
    );

    const status = run(['connections', 'status']);
    expect(status.stdout).toContain('conflict   acme-crm');
    expect(status.stdout).toContain(
      'name: last applied "Acme, renamed in the file", file "Acme, renamed in the file again", stored "Acme, renamed through the API"',
    );
    const events = JSON.parse(run(['events', '--json']).stdout) as Array<{ type: string; message: string }>;
    expect(events.filter((e) => e.type === 'connection_conflict')).toHaveLength(1);

    const apply = run(['apply', dir]);
    expect(apply.status).toBe(1);
    expect(apply.stdout).toContain(
      '0 created, 0 changed, 0 unchanged, 0 removed, 0 kept deleted, 1 conflict(s)',
    );
    expect(apply.stderr).toContain('acme-crm');
    expect(apply.stderr).toContain('apply --force acme-crm');

    const forced = run(['apply', dir, '--force', 'acme-crm']);
    expect(forced.stderr).toBe('');
    expect(forced.status).toBe(0);
    expect(forced.stdout).toMatch(/changed {4}acme-crm \(version \d+ → \d+\): name/);
    expect(show().connection).toMatchObject({
      name: 'Acme, renamed in the file again',
      campaigns: ['c1', 'c2'],
    });
    expect(show().source).toMatch(/via cli \(jane@cli\)$/);
    expect(run(['connections', 'status']).stdout).not.toContain('conflict');
  }, 180_000);

  it('a deleted connection stays deleted: ready everywhere, across a restart and a Redis reconnect', async () => {
    expect(run(['connections', 'delete', 'acme-crm', '--yes']).status).toBe(0);
    expect((await fetch(`${engine!.url}/readyz`)).status).toBe(200);
    await restart();
    expect((await fetch(`${engine!.url}/readyz`)).status).toBe(200);
    const gone = run(['connections', 'show', 'acme-crm']);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toContain('was deleted by jane@cli');
    expect(engine!.logs()).toContain('connection acme-crm stays deleted');

    // Drop the engine's Redis connections: it reconnects, and the deleted connection stays deleted.
    const killed = killClientsOf(engine!.child.pid!);
    expect(killed).toBeGreaterThan(0);
    await eventually('the engine to reconnect', async () => (await fetch(`${engine!.url}/readyz`)).ok);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(run(['connections', 'show', 'acme-crm']).status).toBe(1);

    // Redis restarted without its data (simulated on this prefix): the files are applied again.
    const redis = testRedis();
    try {
      await redis.del(
        keys.connections,
        keys.connectionsApplied,
        keys.connectionsDeleted,
        keys.connectionsLastApplied,
      );
    } finally {
      redis.disconnect();
    }
    killClientsOf(engine!.child.pid!);
    await eventually(
      'the files applied again',
      () => run(['connections', 'show', 'acme-crm']).status === 0,
      20_000,
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}\n${engine!.logs().slice(-3000)}`);
    });
    expect((await fetch(`${engine!.url}/readyz`)).status).toBe(200);
  }, 180_000);
});

/**
 * Kills the Redis clients of one process, so it reconnects; returns how many. Its sockets are found
 * through /proc (the socket inodes of its open files, matched in /proc/net/tcp to their local ports).
 */
function killClientsOf(pid: number): number {
  const inodes = new Set(
    readdirSync(`/proc/${pid}/fd`)
      .map((fd) => {
        try {
          return /socket:\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        } catch {
          return undefined;
        }
      })
      .filter((inode): inode is string => inode !== undefined),
  );
  const ports = new Set(
    ['/proc/net/tcp', '/proc/net/tcp6']
      .flatMap((table) => readFileSync(table, 'utf8').split('\n').slice(1))
      .map((line) => line.trim().split(/\s+/))
      .filter((columns) => columns.length > 9 && columns[2]!.endsWith(':18EB') && inodes.has(columns[9]!))
      .map((columns) => String(Number.parseInt(columns[1]!.split(':').at(-1)!, 16))),
  );
  const clients = execFileSync('redis-cli', ['-h', '127.0.0.1', 'CLIENT', 'LIST'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => ({ id: /\bid=(\d+)/.exec(line)?.[1], port: /\baddr=\S*:(\d+)\s/.exec(line)?.[1] }))
    .filter((client) => client.id && client.port && ports.has(client.port));
  let killed = 0;
  for (const { id } of clients)
    killed += Number(
      execFileSync('redis-cli', ['-h', '127.0.0.1', 'CLIENT', 'KILL', 'ID', id!], {
        encoding: 'utf8',
      }).trim() === '1',
    );
  return killed;
}
