import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  storedConnectionSchema,
  type Connection,
  type StoredConnection,
} from '../config/connection-schema.js';
import { canonicalJson } from '../domain/canonical-json.js';
import type { Keyspace } from './keys.js';

/**
 * The one shared store of connections. Every worker and API process reads connections from here,
 * so all of them use the same version; a change is announced on a pub/sub channel so in-memory
 * indexes (the ingest fan-out) refresh at once.
 */

// Compare-and-bump in one script: re-applying an unchanged file keeps its version, any change makes
// a new version (numbered by the history, which outlives a delete, so a recreated connection never
// reuses a number), and two processes applying at once cannot both claim the same version.
const PUT_SCRIPT = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local stored = cjson.decode(current)
  if stored.hash == ARGV[2] then return {stored.version, 0} end
end
local version = redis.call('HLEN', KEYS[3]) + 1
-- Splice the version in as text: re-encoding with cjson would turn [] into {} and round numbers.
local record = '{"version":' .. version .. ',' .. string.sub(ARGV[3], 2)
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('HSET', KEYS[3], version, record)
redis.call('PUBLISH', KEYS[2], ARGV[1])
return {version, 1}
`;

export function connectionHash(connection: Connection): string {
  return createHash('sha256').update(canonicalJson(connection)).digest('hex');
}

export class ConnectionStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** Stores a validated connection; returns its version and whether anything changed. */
  async put(connection: Connection, source?: string): Promise<{ version: number; changed: boolean }> {
    const hash = connectionHash(connection);
    const record = { connection, hash, updatedAt: this.clock().toISOString(), ...(source ? { source } : {}) };
    const [version, changed] = (await this.redis.eval(
      PUT_SCRIPT,
      3,
      this.keys.connections,
      this.keys.connectionsChanged,
      this.keys.connectionVersions(connection.id),
      connection.id,
      hash,
      JSON.stringify(record),
    )) as [number, number];
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

  /** Removes a connection and tells every process. */
  async remove(id: string): Promise<boolean> {
    const [[, removed]] = (await this.redis
      .multi()
      .hdel(this.keys.connections, id)
      .publish(this.keys.connectionsChanged, id)
      .exec()) as [[Error | null, number], [Error | null, number]];
    return removed === 1;
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
