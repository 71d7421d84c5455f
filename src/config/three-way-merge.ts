import { canonicalJson } from '../domain/canonical-json.js';
import type { Connection } from './connection-schema.js';

/**
 * The rule between connection files and the store (as `kubectl apply`): the store is the truth, and
 * a file is applied as the change it made since it was last applied. Pure: the caller reads the
 * three sides and writes the result.
 *
 * A field is a leaf path (objects are walked, arrays and scalars compared whole), except `campaigns`,
 * whose links merge element by element so a campaign linked through the API, CLI or console stays
 * when the file links or unlinks another.
 */

type Json = Record<string, unknown>;

/** One field the file changed while the store changed it differently since the last apply. */
export interface FieldConflict {
  path: string;
  /** The value the file was last applied with (absent: the field was not set). */
  lastApplied?: unknown;
  file?: unknown;
  stored?: unknown;
}

export type MergeOutcome =
  /** Nothing to write: the file has not changed since it was last applied, or its changes are stored already. */
  | { kind: 'unchanged' }
  /** No stored connection (and none deleted): the file creates it. */
  | { kind: 'create'; connection: Connection }
  /** The file's changes merged into the stored connection (`fields` are the paths the file changed). */
  | { kind: 'update'; merged: Json; fields: string[] }
  /** The connection stays as stored; the operator resolves with `apply --force <id>` or by editing the file. */
  | { kind: 'conflict'; conflicts: FieldConflict[] }
  /** Deleted through the API, CLI or console and the file unchanged since: it stays deleted. */
  | { kind: 'deleted' };

export interface MergeInput {
  /** The file as last applied (parsed), if it ever was. */
  lastApplied?: Connection;
  /** The file now (parsed and validated). */
  file: Connection;
  /** The stored connection, if there is one. */
  stored?: Connection;
  /** The connection was deleted through the admin API (a tombstone), and not created since. */
  deleted: boolean;
  /** `apply --force <id>`: on a conflicting field the file wins; a deleted connection is created again. */
  force: boolean;
}

const same = (a: unknown, b: unknown) => canonicalJson(a ?? null) === canonicalJson(b ?? null);
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every leaf path where `a` and `b` differ (arrays compared whole; `campaigns` left to its own merge). */
export function changedPaths(a: unknown, b: unknown, path: string[] = []): string[][] {
  if (path.length === 1 && path[0] === 'campaigns') return [];
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((key) => changedPaths(a[key], b[key], [...path, key]));
  }
  return same(a, b) ? [] : [path];
}

function getPath(value: unknown, path: readonly string[]): unknown {
  let at = value;
  for (const part of path) {
    if (!isObject(at)) return undefined;
    at = at[part];
  }
  return at;
}

/** Sets (or, for `undefined`, removes) a leaf, making parents as needed and dropping ones left empty. */
function setPath(target: Json, path: readonly string[], value: unknown): void {
  const [head, ...rest] = path;
  if (head === undefined) return;
  if (rest.length === 0) {
    if (value === undefined) delete target[head];
    else target[head] = structuredClone(value);
    return;
  }
  const child = isObject(target[head]) ? (target[head] as Json) : {};
  setPath(child, rest, value);
  if (Object.keys(child).length === 0) delete target[head];
  else target[head] = child;
}

const dotted = (path: readonly string[]) => path.join('.');

/** Campaign links, element by element; `'*'` is merged as one value (it is not a list to add to). */
function mergeCampaigns(
  base: Connection['campaigns'] | undefined,
  file: Connection['campaigns'],
  stored: Connection['campaigns'],
): { value: Connection['campaigns']; conflict: boolean } {
  if (same(base, file)) return { value: stored, conflict: false };
  if (Array.isArray(file) && Array.isArray(stored) && (base === undefined || Array.isArray(base))) {
    const before = new Set(base ?? []);
    const added = file.filter((c) => !before.has(c));
    const removed = new Set([...before].filter((c) => !file.includes(c)));
    const value = [...new Set([...stored, ...added])].filter((c) => !removed.has(c)).sort();
    return { value, conflict: false };
  }
  if (same(stored, file) || same(stored, base)) return { value: file, conflict: false };
  return { value: stored, conflict: true };
}

/**
 * Merges what the file changed since it was last applied into the stored connection. With no
 * last-applied file (a connection first created through the API, then given a file), every field
 * where the file and the store differ is a conflict, and the file's campaigns are added to the links.
 */
export function mergeConnection(input: MergeInput): MergeOutcome {
  const { lastApplied, file, stored, deleted, force } = input;
  const fileChanged = lastApplied === undefined || !same(lastApplied, file);
  if (!stored) {
    if (!deleted) return { kind: 'create', connection: file };
    if (!fileChanged) return { kind: 'deleted' };
    if (force) return { kind: 'create', connection: file };
    return { kind: 'conflict', conflicts: [{ path: '(deleted)', file: 'changed', stored: 'deleted' }] };
  }
  if (!fileChanged) return { kind: 'unchanged' };

  const merged = structuredClone(stored) as unknown as Json;
  const conflicts: FieldConflict[] = [];
  const fields: string[] = [];
  // With no base, compare the file with the store: every difference is a change made on both sides.
  const paths = changedPaths(lastApplied ?? stored, file);
  for (const path of paths) {
    const fromFile = getPath(file, path);
    const now = getPath(stored, path);
    if (same(now, fromFile)) continue;
    const untouched = lastApplied !== undefined && same(now, getPath(lastApplied, path));
    if (untouched || force) {
      setPath(merged, path, fromFile);
      fields.push(dotted(path));
    } else {
      conflicts.push({
        path: dotted(path),
        ...(lastApplied && getPath(lastApplied, path) !== undefined
          ? { lastApplied: getPath(lastApplied, path) }
          : {}),
        ...(fromFile !== undefined ? { file: fromFile } : {}),
        ...(now !== undefined ? { stored: now } : {}),
      });
    }
  }
  const campaigns = mergeCampaigns(lastApplied?.campaigns, file.campaigns, stored.campaigns);
  if (campaigns.conflict && !force) {
    conflicts.push({
      path: 'campaigns',
      ...(lastApplied ? { lastApplied: lastApplied.campaigns } : {}),
      file: file.campaigns,
      stored: stored.campaigns,
    });
  } else {
    const value = campaigns.conflict ? file.campaigns : campaigns.value;
    if (!same(value, stored.campaigns)) {
      merged.campaigns = value;
      fields.push('campaigns');
    }
  }
  if (conflicts.length > 0) return { kind: 'conflict', conflicts };
  if (fields.length === 0) return { kind: 'unchanged' };
  return { kind: 'update', merged, fields };
}
