import { readFile } from 'node:fs/promises';
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { hasSettingSources, isPlainObject, resolveSettingSources } from './setting-sources.js';
import type { ConfigIssue } from '../errors.js';

/**
 * Per-environment connection files. An overlay file names the connection and the environment it is
 * for, and holds the fields that differ there:
 *
 *   overlay: { connection: acme-sendgrid, environment: sandbox }
 *   settings: { baseUrl: http://127.0.0.1:4010 }
 *
 * With CONNECTIONS_ENV=sandbox it is merged over the connection's file (JSON Merge Patch, RFC 7396:
 * maps merge key by key, a list or value replaces, null removes) before validation, and every issue
 * is reported at the file and line that wrote the field. Overlays for other environments are only
 * checked for their header and target, so a production start does not depend on sandbox values.
 */

// Connection ids and environment names (CONNECTIONS_ENV in env.ts too) are both slugs.
const name = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const NAME_RULE = 'use 1-63 lowercase letters, digits, "-" or "_", starting with a letter or digit';
const slug = z.string().regex(name, NAME_RULE);

const overlayHeader = z.object({ connection: slug, environment: slug }).strict();

/** Fields that say which connection a file is; an overlay selects one and cannot rename it. */
const IDENTITY_FIELDS = ['id', 'account'];

export interface ConnectionSource {
  /** The connection's own file, for messages. */
  file: string;
  /** The overlay merged over it, when one applies. */
  overlay?: string;
  /** What to validate: the file's text, or the merged and resolved connection as JSON. */
  text: string;
  /** Puts an issue found in `text` at the file and line that wrote its field. */
  locate<T extends ConfigIssue>(issue: T): T;
  /**
   * Problems found before validation (an unset variable). Validating without the value would only
   * add noise (every template reading it), so the loader reports these instead.
   */
  issues: ConfigIssue[];
}

interface ParsedFile {
  file: string;
  text: string;
  document: Document;
  lines: LineCounter;
}

interface Overlay extends ParsedFile {
  connection: string;
  environment: string;
  patch: Record<string, unknown>;
}

/** Reads connection files and overlays, and returns one source per connection to validate. */
export async function readConnectionSources(
  files: ReadonlyArray<{ absolute: string; file: string }>,
  environment: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ sources: ConnectionSource[]; issues: ConfigIssue[] }> {
  const issues: ConfigIssue[] = [];
  const selected = environment === '' ? undefined : environment;
  if (selected !== undefined && !name.test(selected))
    issues.push({ field: 'CONNECTIONS_ENV', reason: `"${selected}": ${NAME_RULE}` });

  const bases: ParsedFile[] = [];
  const overlays: Overlay[] = [];
  for (const { absolute, file } of files) {
    const parsed = parseFile(file, await readFile(absolute, 'utf8'));
    const root: unknown = parsed.document.errors.length === 0 ? parsed.document.toJS() : undefined;
    if (isPlainObject(root) && 'overlay' in root) {
      const overlay = readOverlay(parsed, root, issues);
      if (overlay) overlays.push(overlay);
    } else bases.push(parsed);
  }

  const baseIds = new Map<string, ParsedFile>();
  for (const base of bases) {
    const id = base.document.errors.length === 0 ? base.document.get('id') : undefined;
    if (typeof id === 'string') baseIds.set(id, base);
  }
  const chosen = new Map<ParsedFile, Overlay>();
  for (const overlay of overlays) {
    const base = baseIds.get(overlay.connection);
    if (!base) {
      issues.push(
        at(overlay, 'overlay.connection', unknownConnection(overlay.connection, [...baseIds.keys()])),
      );
      continue;
    }
    if (overlay.environment !== selected) continue;
    const other = chosen.get(base);
    if (other) {
      issues.push(
        at(overlay, 'overlay', `${other.file} is already the ${selected} overlay of ${overlay.connection}`),
      );
      continue;
    }
    chosen.set(base, overlay);
  }

  const sources = bases.map((base) => sourceOf(base, chosen.get(base), env));
  return { sources, issues };
}

function parseFile(file: string, text: string): ParsedFile {
  const lines = new LineCounter();
  const document = parseDocument(text, { uniqueKeys: true, lineCounter: lines });
  return { file, text, document, lines };
}

function readOverlay(
  parsed: ParsedFile,
  root: Record<string, unknown>,
  issues: ConfigIssue[],
): Overlay | undefined {
  const header = overlayHeader.safeParse(root.overlay);
  if (!header.success) {
    for (const issue of header.error.issues) {
      const field = ['overlay', ...issue.path.map(String)].join('.');
      const reason =
        issue.code === 'unrecognized_keys'
          ? `unknown field ${issue.keys.join(', ')}: an overlay names its connection and environment`
          : issue.path.length === 0
            ? 'write overlay: { connection: <connection id>, environment: <name> }'
            : issue.message;
      issues.push(at(parsed, field, reason));
    }
    return undefined;
  }
  const { overlay: _header, ...patch } = root;
  let ok = true;
  for (const field of IDENTITY_FIELDS)
    if (field in patch) {
      ok = false;
      issues.push(
        at(parsed, field, `an overlay cannot change ${field}: overlay.connection chooses the connection`),
      );
    }
  return ok ? { ...parsed, ...header.data, patch } : undefined;
}

function sourceOf(base: ParsedFile, overlay: Overlay | undefined, env: NodeJS.ProcessEnv): ConnectionSource {
  const plain: ConnectionSource = {
    file: base.file,
    text: base.text,
    locate: <T extends ConfigIssue>(issue: T) => issue,
    issues: [],
  };
  // Files without overlay or `{ env: ... }` settings are validated from their text, exactly as before.
  if (base.document.errors.length > 0) return plain;
  const root: unknown = base.document.toJS();
  const merged = overlay ? mergePatch(root, overlay.patch) : root;
  if (!isPlainObject(merged) || (!overlay && !hasSettingSources(merged.settings))) return plain;

  const resolved = resolveSettingSources(merged.settings, env);
  const connection = 'settings' in merged ? { ...merged, settings: resolved.settings } : merged;
  const locate = <T extends ConfigIssue>(issue: T): T => locateIn(issue, base, overlay);
  return {
    file: base.file,
    ...(overlay ? { overlay: overlay.file } : {}),
    text: JSON.stringify(connection),
    locate,
    issues: resolved.issues.map(locate),
  };
}

/** JSON Merge Patch (RFC 7396). */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/** The deeper of the two files' nodes on the issue's field wins; the overlay on a tie (it set it). */
function locateIn<T extends ConfigIssue>(issue: T, base: ParsedFile, overlay: Overlay | undefined): T {
  const parts = fieldParts(issue.field);
  const inBase = deepestNode(base, parts, 0);
  const inOverlay = overlay ? deepestNode(overlay, parts, 1) : undefined;
  const where = inOverlay && (!inBase || inOverlay.depth >= inBase.depth) ? inOverlay : inBase;
  const { line: _line, ...rest } = issue;
  if (!where) return { ...rest, file: base.file } as T;
  return { ...rest, file: where.file, line: where.line } as T;
}

function deepestNode(
  parsed: ParsedFile,
  parts: Array<string | number>,
  minDepth: number,
): { file: string; line: number; depth: number } | undefined {
  for (let depth = parts.length; depth >= minDepth; depth -= 1) {
    const node = depth === 0 ? parsed.document.contents : parsed.document.getIn(parts.slice(0, depth), true);
    if (isNode(node) && node.range)
      return { file: parsed.file, line: parsed.lines.linePos(node.range[0]).line, depth };
  }
  return undefined;
}

function fieldParts(field: string): Array<string | number> {
  const parts: Array<string | number> = [];
  for (const match of field.matchAll(/([^.[\]]+)|\[(\d+)\]/g))
    parts.push(match[2] !== undefined ? Number(match[2]) : match[1]!);
  return parts;
}

function at(parsed: ParsedFile, field: string, reason: string): ConfigIssue {
  const where = deepestNode(parsed, fieldParts(field), 0);
  return { file: parsed.file, ...(where ? { line: where.line } : {}), field, reason };
}

function unknownConnection(id: string, known: string[]): string {
  const list = known.length > 0 ? `: the connections here are ${known.sort().join(', ')}` : '';
  return `no connection file has id "${id}"${list}`;
}
