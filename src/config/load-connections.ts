import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { connectionSchema, type Connection } from './connection-schema.js';
import { readConnectionSources } from './environment-overlays.js';
import { ConnectionConfigError, type ConfigIssue } from '../errors.js';
import { checkRuleValues } from '../queue/rule-values.js';
import { checkTemplates } from '../templates/render-request.js';

export interface LoadedConnection {
  connection: Connection;
  /** Path relative to the working directory, for messages. */
  file: string;
  /** The CONNECTIONS_ENV overlay merged over it, if any. */
  overlay?: string;
  /**
   * sha256 (hex) of what was validated: the file's text, or with an overlay or `{ env }` settings the
   * merged and resolved connection, so a version names exactly what made it.
   */
  fileHash: string;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

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

/** Parses and validates one file's text. Returns the connection or every issue found in it, with lines. */
export function parseConnectionFile(
  text: string,
  file: string,
): { connection?: Connection; issues: ConfigIssue[] } {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true, lineCounter });
  if (document.errors.length > 0) {
    return {
      issues: document.errors.map((error) => ({
        file,
        ...(error.linePos ? { line: error.linePos[0].line } : {}),
        field: '',
        reason: `YAML: ${error.message.split('\n')[0]}`,
      })),
    };
  }
  const locate = (issue: ConfigIssue): ConfigIssue => {
    const line = lineOf(document, lineCounter, fieldParts(issue.field));
    return { ...issue, file, ...(line ? { line } : {}) };
  };
  const result = connectionSchema.safeParse(document.toJS());
  if (!result.success) return { issues: zodIssues(result.error).map(locate) };
  const templateIssues = [...checkTemplates(result.data), ...checkRuleValues(result.data)].map(locate);
  if (templateIssues.length > 0) return { issues: templateIssues };
  return { connection: result.data, issues: [] };
}

/** `request.body.json.items[0]` → ['request', 'body', 'json', 'items', 0]. */
function fieldParts(field: string): Array<string | number> {
  const parts: Array<string | number> = [];
  for (const match of field.matchAll(/([^.[\]]+)|\[(\d+)\]/g))
    parts.push(match[2] !== undefined ? Number(match[2]) : match[1]!);
  return parts;
}

/** The line of the deepest node on `parts` that exists (a missing field points at its parent). */
function lineOf(
  document: Document,
  lineCounter: LineCounter,
  parts: Array<string | number>,
): number | undefined {
  for (let depth = parts.length; depth >= 0; depth -= 1) {
    const node = depth === 0 ? document.contents : document.getIn(parts.slice(0, depth), true);
    if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
  }
  return undefined;
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
export async function loadConnections(
  dir: string,
  environment = process.env.CONNECTIONS_ENV,
): Promise<LoadedConnection[]> {
  const files = (await findConnectionFiles(dir)).map((absolute) => {
    const relative = path.relative(process.cwd(), absolute);
    return { absolute, file: relative && !relative.startsWith('..') ? relative : absolute };
  });
  // Overlays for CONNECTIONS_ENV and `{ env: ... }` settings are applied here, before validation.
  const { sources, issues } = await readConnectionSources(files, environment);
  const loaded: LoadedConnection[] = [];
  const seen = new Map<string, string>();
  for (const source of sources) {
    const { file } = source;
    if (source.issues.length > 0) {
      issues.push(...source.issues);
      continue;
    }
    const parsed = parseConnectionFile(source.text, file);
    issues.push(...parsed.issues.map(source.locate));
    if (!parsed.connection) continue;
    const other = seen.get(parsed.connection.id);
    if (other) {
      issues.push({ file, field: 'id', reason: `"${parsed.connection.id}" is already used by ${other}` });
      continue;
    }
    seen.set(parsed.connection.id, file);
    loaded.push({
      connection: parsed.connection,
      file,
      fileHash: sha256(source.text),
      ...(source.overlay ? { overlay: source.overlay } : {}),
    });
  }
  if (issues.length > 0) throw new ConnectionConfigError(issues);
  return loaded;
}
