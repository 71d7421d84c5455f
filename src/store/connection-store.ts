import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import {
  connectionSchema,
  storedConnectionSchema,
  type Connection,
  type StoredConnection,
} from '../config/connection-schema.js';
import { originFile, type ConnectionOrigin } from '../config/connection-origin.js';
import { ConnectionChangedError, InputError } from '../errors.js';
import { canonicalJson } from '../domain/canonical-json.js';
import type { Keyspace } from './keys.js';

/**
 * The one shared store of connections. Every worker and API process reads connections from here,
 * so all of them use the same version; a change is announced on a pub/sub channel so in-memory
 * indexes (the ingest fan-out) refresh at once.
 */

// Compare-and-bump in one script: re-applying an unchanged connection keeps its version, any change
// makes a new version (numbered by the history, which outlives a delete, so a recreated connection
// never reuses a number). With an expected version (read before the change was worked out), a store
// changed meanwhile answers -1 and nothing is written: the caller reads again and redoes its change,
// so two operators or two engines at once never lose one another's change. The file's last-applied
// record, the conflict and the tombstone move in the same step.
const PUT_SCRIPT = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
local currentVersion = 0
local stored = nil
if current then
  stored = cjson.decode(current)
  currentVersion = stored.version
end
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= currentVersion then return {-1, 0} end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
  redis.call('HDEL', KEYS[5], ARGV[1])
end
if ARGV[6] == '1' then redis.call('HDEL', KEYS[6], ARGV[1]) end
if ARGV[3] == '' or (stored and stored.hash == ARGV[2]) then return {currentVersion, 0} end
local version = redis.call('HLEN', KEYS[3]) + 1
-- Splice the version in as text: re-encoding with cjson would turn [] into {} and round numbers.
local record = '{"version":' .. version .. ',' .. string.sub(ARGV[3], 2)
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('HSET', KEYS[3], version, record)
redis.call('PUBLISH', KEYS[2], ARGV[1])
return {version, 1}
`;

// Delete with a tombstone, so a file unchanged since it was last applied never brings it back.
const REMOVE_SCRIPT = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local version = cjson.decode(current).version
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], '{"version":' .. version .. ',' .. string.sub(ARGV[2], 2))
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
`;

export function connectionHash(connection: Connection): string {
  return createHash('sha256').update(canonicalJson(connection)).digest('hex');
}

/** The file a connection was last applied from: the base of the next three-way apply. */
export const lastAppliedSchema = z.object({
  connection: connectionSchema,
  file: z.string().optional(),
  fileHash: z.string().optional(),
  at: z.string(),
});
export type LastApplied = z.infer<typeof lastAppliedSchema>;

/** A connection deleted through the admin API: it stays deleted until created again or `apply --force`. */
export const tombstoneSchema = z.object({ version: z.number(), at: z.string(), by: z.string() });
export type Tombstone = z.infer<typeof tombstoneSchema>;

export interface PutOptions {
  /** The version read before the change was worked out (0: none stored); another is a conflict. */
  expectedVersion?: number;
  /** Record this as the file last applied. */
  lastApplied?: LastApplied;
  /** Clear a tombstone: the connection is created again on purpose. */
  undelete?: boolean;
}

export class ConnectionStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /**
   * Stores a validated connection; returns its version and whether anything changed. With
   * `expectedVersion`, throws `ConnectionChangedError` when the store holds another version.
   */
  async put(
    connection: Connection | undefined,
    origin: ConnectionOrigin = { via: 'api' },
    options: PutOptions & { id?: string } = {},
  ): Promise<{ version: number; changed: boolean }> {
    const id = connection?.id ?? options.id;
    if (!id) throw new InputError('a connection id is needed', { id: 'required' });
    const hash = connection ? connectionHash(connection) : '';
    const record = connection
      ? JSON.stringify({ connection, hash, updatedAt: this.clock().toISOString(), origin })
      : '';
    const [version, changed] = (await this.redis.eval(
      PUT_SCRIPT,
      6,
      this.keys.connections,
      this.keys.connectionsChanged,
      this.keys.connectionVersions(id),
      this.keys.connectionsLastApplied,
      this.keys.connectionConflicts,
      this.keys.connectionsDeleted,
      id,
      hash,
      record,
      options.expectedVersion === undefined ? '' : String(options.expectedVersion),
      options.lastApplied ? JSON.stringify(options.lastApplied) : '',
      options.undelete ? '1' : '0',
    )) as [number, number];
    if (version === -1)
      throw new ConnectionChangedError(
        `connection ${id} changed while this change was being made; read it again and retry`,
      );
    return { version, changed: changed === 1 };
  }

  /**
   * The current version, read from Redis every time (every worker sees the same version). Parsing
   * and validating it is what costs, so an unchanged record is parsed once: the result is shared,
   * and callers treat it as read-only.
   */
  async get(id: string): Promise<StoredConnection | undefined> {
    const raw = await this.redis.hget(this.keys.connections, id);
    return raw === null ? undefined : this.parse(id, raw);
  }

  /** A current record read some other way (`ConnectionControl.admit` answers `stale` with it). */
  parse(id: string, raw: string): StoredConnection {
    const last = this.parsed.get(id);
    if (last?.raw === raw) return last.stored;
    const stored = parseStored(raw);
    this.parsed.set(id, { raw, stored });
    return stored;
  }
  private readonly parsed = new Map<string, { raw: string; stored: StoredConnection }>();

  /** One version as it was stored (the current one, or any earlier one: history outlives changes). */
  async getVersion(id: string, version: number): Promise<StoredConnection | undefined> {
    const raw = await this.redis.hget(this.keys.connectionVersions(id), String(version));
    return raw === null ? undefined : parseStored(raw);
  }

  /** Every stored version of a connection, oldest first. */
  async versions(id: string): Promise<StoredConnection[]> {
    const all = await this.redis.hvals(this.keys.connectionVersions(id));
    return all.map(parseStored).sort((a, b) => a.version - b.version);
  }

  /**
   * Deletes a connection, leaving a tombstone saying who and when (so no file, restart or reconnect
   * brings it back unasked), and tells every process. False when there was none.
   */
  async remove(id: string, by = 'admin-api'): Promise<boolean> {
    const tombstone = JSON.stringify({ at: this.clock().toISOString(), by });
    const removed = (await this.redis.eval(
      REMOVE_SCRIPT,
      4,
      this.keys.connections,
      this.keys.connectionsChanged,
      this.keys.connectionsDeleted,
      this.keys.connectionConflicts,
      id,
      tombstone,
    )) as number;
    return removed === 1;
  }

  /** The tombstone of a connection deleted through the admin API, if it is deleted. */
  async deleted(id: string): Promise<Tombstone | undefined> {
    const raw = await this.redis.hget(this.keys.connectionsDeleted, id);
    return raw === null ? undefined : tombstoneSchema.parse(JSON.parse(raw));
  }

  /** The file a connection was last applied from (older stores: its last version written from a file). */
  async lastApplied(id: string): Promise<LastApplied | undefined> {
    const raw = await this.redis.hget(this.keys.connectionsLastApplied, id);
    if (raw !== null) return lastAppliedSchema.parse(JSON.parse(raw));
    const fromFile = (await this.versions(id)).filter((v) => originFile(v) !== undefined).at(-1);
    if (!fromFile) return undefined;
    const file = originFile(fromFile);
    return {
      connection: fromFile.connection,
      ...(file ? { file } : {}),
      ...(fromFile.origin?.fileHash ? { fileHash: fromFile.origin.fileHash } : {}),
      at: fromFile.updatedAt,
    };
  }

  /** Ids of every connection ever applied from a file (for prune and for files that went away). */
  async appliedIds(): Promise<string[]> {
    return this.redis.hkeys(this.keys.connectionsLastApplied);
  }

  /** Marks this Redis as holding the applied connections; `true` if it already did. */
  async markApplied(): Promise<boolean> {
    const set = await this.redis.set(this.keys.connectionsApplied, this.clock().toISOString(), 'NX');
    return set === null;
  }

  /** Whether connection files were ever applied to this Redis (gone: it restarted without its data). */
  async wasApplied(): Promise<boolean> {
    return (await this.redis.exists(this.keys.connectionsApplied)) === 1;
  }

  /** Ids of every stored connection (one HKEYS: no record is read or parsed). */
  async ids(): Promise<string[]> {
    return this.redis.hkeys(this.keys.connections);
  }

  async count(): Promise<number> {
    return this.redis.hlen(this.keys.connections);
  }

  async list(): Promise<StoredConnection[]> {
    const all = await this.redis.hvals(this.keys.connections);
    return all.map(parseStored).sort((a, b) => a.connection.id.localeCompare(b.connection.id));
  }
}

function parseStored(raw: string): StoredConnection {
  return storedConnectionSchema.parse(JSON.parse(raw));
}

/** One changed leaf between two versions of a connection. */
export interface FieldChange {
  path: string;
  from?: unknown;
  to?: unknown;
}

/** A per-field diff of two connection objects (leaves and arrays compared whole at their path). */
export function diffConnections(from: unknown, to: unknown, path = ''): FieldChange[] {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObject(from) && isObject(to)) {
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    return keys.flatMap((key) => diffConnections(from[key], to[key], path ? `${path}.${key}` : key));
  }
  if (canonicalJson(from ?? null) === canonicalJson(to ?? null)) return [];
  return [{ path, ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }) }];
}

/**
 * Runs a read-modify-write of a connection until it lands: `work` reads the connection, works out its
 * change and puts it guarded by the version it read; a `ConnectionChangedError` (another writer landed
 * first) runs it again after a short random wait, so writers racing in step fall out of step. After
 * 20 tries (about a second of steady contention) the error is the caller's.
 */
export async function untilUnchanged<T>(work: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries += 1) {
    try {
      return await work();
    } catch (error) {
      if (!(error instanceof ConnectionChangedError) || tries === 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * tries));
    }
  }
}
