import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { connectionSchema, type Connection } from './connection-schema.js';
import { connectionWarnings, type ConfigWarning } from './connection-warnings.js';
import { readConnectionSources } from './environment-overlays.js';
import { fieldNamesAt } from './field-names.js';
import { ConnectionConfigError, type ConfigIssue } from '../errors.js';
import { checkRuleValues } from '../queue/rule-values.js';
import type { SecretSource } from '../templates/context.js';
import { checkTemplates } from '../templates/render-request.js';
import { didYouMean } from '../templates/suggest.js';

export type { ConfigWarning } from './connection-warnings.js';

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

export interface ParseOptions {
  /** Where secrets are read from: given, a referenced secret that is not set is a warning. */
  secrets?: SecretSource;
}

/**
 * Parses and validates one file's text. Returns the connection or every issue found in it, with
 * lines, and for a valid connection the warnings about it (see connection-warnings.ts).
 */
export function parseConnectionFile(
  text: string,
  file: string,
  options: ParseOptions = {},
): { connection?: Connection; issues: ConfigIssue[]; warnings: ConfigWarning[] } {
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
      warnings: [],
    };
  }
  const locate = <T extends ConfigIssue>(issue: T): T => {
    const line = lineOf(document, lineCounter, fieldParts(issue.field));
    return { ...issue, file, ...(line ? { line } : {}) };
  };
  const result = connectionSchema.safeParse(document.toJS());
  if (!result.success) return { issues: zodIssues(result.error).map(locate), warnings: [] };
  const templateIssues = [...checkTemplates(result.data), ...checkRuleValues(result.data)].map(locate);
  if (templateIssues.length > 0) return { issues: templateIssues, warnings: [] };
  const warnings = connectionWarnings(result.data, options.secrets).map(locate);
  return { connection: result.data, issues: [], warnings };
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
      const known = fieldNamesAt(connectionSchema, issue.path);
      return issue.keys.map((key) => ({
        ...at,
        field: fieldPath([...issue.path, key]),
        reason: `unknown field${didYouMean(key, known) || ' (check the spelling)'}`,
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

export interface ConnectionFilesCheck {
  loaded: LoadedConnection[];
  issues: ConfigIssue[];
  warnings: ConfigWarning[];
}

/**
 * Validates every connection file under `dir` without throwing for their problems: the valid
 * connections, every issue (two files claiming one id included) and every warning. Overlays for
 * CONNECTIONS_ENV and `{ env: ... }` settings are applied first, and each problem is put at the file
 * and line that wrote its field.
 */
export async function checkConnectionFiles(
  dir: string,
  options: ParseOptions & { environment?: string | undefined } = {},
): Promise<ConnectionFilesCheck> {
  const files = (await findConnectionFiles(dir)).map((absolute) => {
    const relative = path.relative(process.cwd(), absolute);
    return { absolute, file: relative && !relative.startsWith('..') ? relative : absolute };
  });
  const environment = 'environment' in options ? options.environment : process.env.CONNECTIONS_ENV;
  const { sources, issues } = await readConnectionSources(files, environment);
  const warnings: ConfigWarning[] = [];
  const loaded: LoadedConnection[] = [];
  const seen = new Map<string, string>();
  for (const source of sources) {
    const { file } = source;
    if (source.issues.length > 0) {
      issues.push(...source.issues);
      continue;
    }
    const parsed = parseConnectionFile(source.text, file, options);
    issues.push(...parsed.issues.map(source.locate));
    if (!parsed.connection) continue;
    const other = seen.get(parsed.connection.id);
    if (other) {
      issues.push({ file, field: 'id', reason: `"${parsed.connection.id}" is already used by ${other}` });
      continue;
    }
    seen.set(parsed.connection.id, file);
    warnings.push(...parsed.warnings.map(source.locate));
    loaded.push({
      connection: parsed.connection,
      file,
      fileHash: sha256(source.text),
      ...(source.overlay ? { overlay: source.overlay } : {}),
    });
  }
  return { loaded, issues, warnings };
}

/**
 * Loads every connection under `dir`, all or nothing: one bad file (or two files claiming the same
 * id) refuses the whole set with every issue listed, so a half-applied configuration never runs.
 */
export async function loadConnections(
  dir: string,
  environment = process.env.CONNECTIONS_ENV,
): Promise<LoadedConnection[]> {
  const { loaded, issues } = await checkConnectionFiles(dir, { environment });
  if (issues.length > 0) throw new ConnectionConfigError(issues);
  return loaded;
}
