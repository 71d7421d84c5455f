import type { Connection } from '../config/connection-schema.js';
import { parseTemplate } from './template-env.js';

type Node = hbs.AST.Node;

/** Unsubscribe fields anyone can type anything into, so they may hold text outside Latin-1. */
const FREE_TEXT = new Set(['email', 'campaign', 'source', 'attributes']);
/** Helpers whose output is ASCII whatever goes in. */
const ENCODING_HELPERS = new Set(['urlencode', 'base64', 'sha256', 'sha1', 'md5']);
/** Helpers whose output is a boolean, not the text they were given. */
const BOOLEAN_HELPERS = new Set(['eq', 'and', 'or', 'not']);

export interface FreeTextHeader {
  field: string;
  variable: string;
}

/**
 * Header templates that write a free-text unsubscribe field (email, campaign, source, an
 * attribute) as it is. HTTP header values are Latin-1: an address like `jöhn@例え.jp` makes the
 * HTTP client refuse the whole request, so such a value should go through an encoding helper.
 */
export function freeTextHeaders(connection: Connection): FreeTextHeader[] {
  const request = connection.request;
  const headers: Array<[string, string]> = Object.entries(request.headers).map(([name, source]) => [
    `request.headers.${name}`,
    source,
  ]);
  if (request.auth.type === 'api_key') headers.push(['request.auth.value', request.auth.value]);
  if (request.auth.type === 'bearer') headers.push(['request.auth.token', request.auth.token]);
  const found: FreeTextHeader[] = [];
  for (const [field, source] of headers) {
    let program: hbs.AST.Program;
    try {
      program = parseTemplate(source);
    } catch {
      continue; // compiling reports it
    }
    const variables = new Set<string>();
    walk(program, false, variables);
    for (const variable of variables) found.push({ field, variable });
  }
  return found;
}

function walk(node: Node | undefined, encoded: boolean, out: Set<string>): void {
  if (!node) return;
  switch (node.type) {
    case 'Program':
      for (const statement of (node as hbs.AST.Program).body) walk(statement, encoded, out);
      return;
    case 'BlockStatement': {
      // A block's argument decides or scopes; its output is what its body writes.
      const block = node as hbs.AST.BlockStatement;
      walk(block.program, encoded, out);
      walk(block.inverse, encoded, out);
      return;
    }
    case 'MustacheStatement':
    case 'SubExpression': {
      const call = node as hbs.AST.MustacheStatement | hbs.AST.SubExpression;
      const helper =
        call.path.type === 'PathExpression' ? (call.path as hbs.AST.PathExpression).original : '';
      if (call.params.length === 0 && !call.hash) return walk(call.path, encoded, out);
      if (BOOLEAN_HELPERS.has(helper)) return;
      for (const param of call.params) walk(param, encoded || ENCODING_HELPERS.has(helper), out);
      return;
    }
    case 'PathExpression': {
      const path = node as hbs.AST.PathExpression;
      const parts = path.data && path.parts[0] === 'root' ? path.parts.slice(1) : path.parts;
      if (!encoded && (!path.data || path.parts[0] === 'root') && FREE_TEXT.has(parts[0] ?? ''))
        out.add(parts.join('.'));
      return;
    }
    default:
      return;
  }
}
