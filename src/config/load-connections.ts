import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { connectionSchema, type Connection } from './connection-schema.js';
import { ConnectionConfigError, type ConfigIssue } from '../errors.js';
import { checkTemplates } from '../templates/render-request.js';

export interface LoadedConnection {
  connection: Connection;
  /** Path relative to the working directory, for messages. */
  file: string;
}

/** Connection files are `*.yaml` / `*.yml` anywhere under the directory (examples in sub-folders too). */
export async function findConnectionFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch (error) {
    throw new ConnectionConfigError([
      { file: dir, field: '', reason: `cannot read directory: ${(error as Error).message}` },
    ]);
  }
  return entries
    .filter((entry) => entry.isFile() && /\.ya?ml$/i.test(entry.name))
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}

/** Parses and validates one file's text. Returns the connection or every issue found in it. */
export function parseConnectionFile(
  text: string,
  file: string,
): { connection?: Connection; issues: ConfigIssue[] } {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    return {
      issues: document.errors.map((error) => ({
        file,
        field: '',
        reason: `YAML: ${error.message.split('\n')[0]}`,
      })),
    };
  }
  const result = connectionSchema.safeParse(document.toJS());
  if (!result.success) return { issues: zodIssues(result.error, file) };
  const templateIssues = checkTemplates(result.data).map((issue) => ({ ...issue, file }));
  if (templateIssues.length > 0) return { issues: templateIssues };
  return { connection: result.data, issues: [] };
}

export function zodIssues(error: z.ZodError, file?: string): ConfigIssue[] {
  const at = file ? { file } : {};
  return error.issues.flatMap((issue) => {
    // An unknown key is reported at the key itself, so "limitz" points at limitz, not at its parent.
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({
        ...at,
        field: fieldPath([...issue.path, key]),
        reason: 'unknown field (check the spelling)',
      }));
    }
    return [{ ...at, field: fieldPath(issue.path), reason: issue.message }];
  });
}

function fieldPath(path: readonly PropertyKey[]): string {
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i ? '.' : ''}${String(part)}`))
    .join('');
}

/**
 * Loads every connection under `dir`, all or nothing: one bad file (or two files claiming the same
 * id) refuses the whole set with every issue listed, so a half-applied configuration never runs.
 */
export async function loadConnections(dir: string): Promise<LoadedConnection[]> {
  const files = await findConnectionFiles(dir);
  const issues: ConfigIssue[] = [];
  const loaded: LoadedConnection[] = [];
  const seen = new Map<string, string>();
  for (const absolute of files) {
    const relative = path.relative(process.cwd(), absolute);
    const file = relative && !relative.startsWith('..') ? relative : absolute;
    const parsed = parseConnectionFile(await readFile(absolute, 'utf8'), file);
    issues.push(...parsed.issues);
    if (!parsed.connection) continue;
    const other = seen.get(parsed.connection.id);
    if (other) {
      issues.push({ file, field: 'id', reason: `"${parsed.connection.id}" is already used by ${other}` });
      continue;
    }
    seen.set(parsed.connection.id, file);
    loaded.push({ connection: parsed.connection, file });
  }
  if (issues.length > 0) throw new ConnectionConfigError(issues);
  return loaded;
}
