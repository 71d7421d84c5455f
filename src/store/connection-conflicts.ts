import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Keyspace } from './keys.js';

/**
 * Conflicts between connection files and the store that wait for an operator: a field the file
 * changed while the API, CLI or console changed it too since the file was last applied. The
 * connection stays as stored until `apply --force <id>` or an edited file resolves it; a successful
 * apply of that connection clears its record (in the store's put script).
 */
export const connectionConflictSchema = z.object({
  id: z.string(),
  file: z.string().optional(),
  /** sha256 of the file's text that conflicts: the same file seen again is not news. */
  fileHash: z.string().optional(),
  fields: z.array(
    z.object({
      path: z.string(),
      lastApplied: z.unknown().optional(),
      file: z.unknown().optional(),
      stored: z.unknown().optional(),
    }),
  ),
  /** Why, when it is not a field changed on both sides (the merged connection does not validate). */
  reason: z.string().optional(),
  /** The stored version the file conflicts with. */
  storedVersion: z.number().optional(),
  at: z.string(),
});
export type ConnectionConflict = z.infer<typeof connectionConflictSchema>;

const sameConflict = (a: ConnectionConflict, b: ConnectionConflict) =>
  JSON.stringify({ ...a, at: '' }) === JSON.stringify({ ...b, at: '' });

export class ConnectionConflicts {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
  ) {}

  /** Records a conflict; `true` when it is news (not the same conflict recorded already). */
  async record(conflict: ConnectionConflict): Promise<boolean> {
    const previous = await this.get(conflict.id);
    if (previous && sameConflict(previous, conflict)) return false;
    await this.redis.hset(this.keys.connectionConflicts, conflict.id, JSON.stringify(conflict));
    return true;
  }

  async get(id: string): Promise<ConnectionConflict | undefined> {
    const raw = await this.redis.hget(this.keys.connectionConflicts, id);
    return raw === null ? undefined : connectionConflictSchema.parse(JSON.parse(raw));
  }

  async list(): Promise<ConnectionConflict[]> {
    const all = await this.redis.hvals(this.keys.connectionConflicts);
    return all
      .map((raw) => connectionConflictSchema.parse(JSON.parse(raw)))
      .sort((a, b) => a.id.localeCompare(b.id));
  }
}
