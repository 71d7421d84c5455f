import type { Connection, JsonTemplate, RequestTemplate } from '../config/connection-schema.js';
import { TemplateError, type ConfigIssue } from '../errors.js';
import { hasHeaderUnsafeChar } from './chars.js';
import { describeFailure } from './problem.js';
import {
  compileTemplate,
  isSingleExpression,
  parseTemplate,
  type CompiledTemplate,
  type EscapeContext,
} from './template-env.js';

/** A compiled template and the connection-file field it came from, for error messages. */
export interface CompiledField {
  readonly field: string;
  readonly template: CompiledTemplate;
}

export type CompiledJson =
  | { readonly kind: 'literal'; readonly value: string | number | boolean | null }
  | { readonly kind: 'text' | 'value'; readonly compiled: CompiledField }
  | { readonly kind: 'array'; readonly items: readonly CompiledJson[] }
  | { readonly kind: 'object'; readonly entries: readonly (readonly [string, CompiledJson])[] };

export type CompiledAuth =
  | { readonly type: 'none' }
  | {
      readonly type: 'api_key';
      readonly header: string;
      readonly prefix: string;
      readonly value: CompiledField;
    }
  | { readonly type: 'basic'; readonly username: CompiledField; readonly password: CompiledField }
  | { readonly type: 'bearer'; readonly token: CompiledField };

/** Everything a connection renders, compiled once per connection version. */
export interface CompiledConnection {
  readonly connectionId: string;
  readonly method: RequestTemplate['method'];
  readonly url: CompiledField;
  /** Names are lowercased. */
  readonly headers: readonly { readonly name: string; readonly value: CompiledField }[];
  readonly auth: CompiledAuth;
  readonly body?: CompiledJson;
}

/** Headers the sender owns: setting them by hand breaks framing or routing. */
const SENDER_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection']);

/** Compiles every template of a connection, reporting every problem rather than the first. */
export function compileConnectionParts(connection: Connection): {
  compiled?: CompiledConnection;
  issues: ConfigIssue[];
} {
  const issues: ConfigIssue[] = [];
  const compile = (source: string, context: EscapeContext, field: string): CompiledField | undefined => {
    try {
      return { field, template: compileTemplate(source, context) };
    } catch (error) {
      issues.push({ field, reason: describeFailure(error) });
      return undefined;
    }
  };
  const request = connection.request;
  const url = compile(request.url, 'url', 'request.url');
  const authHeader = authHeaderName(request.auth);

  const headers: { name: string; value: CompiledField }[] = [];
  const seen = new Map<string, string>();
  for (const [original, source] of Object.entries(request.headers)) {
    const name = original.toLowerCase();
    const field = `request.headers.${original}`;
    const clash = seen.get(name);
    let reason: string | undefined;
    if (clash !== undefined) reason = `same header as ${clash} (header names ignore case)`;
    else if (name === authHeader) reason = `set by request.auth (${request.auth.type}); remove one of them`;
    else if (SENDER_HEADERS.has(name)) reason = 'set by the sender; remove it';
    else if (name === '__proto__') reason = 'not a usable header name';
    seen.set(name, original);
    if (reason) {
      issues.push({ field, reason });
      continue;
    }
    const value = compile(source, 'header', field);
    if (value) headers.push({ name, value });
  }
  const auth = compileAuth(request.auth, compile, issues);
  const body = request.body && compileJson(request.body.json, 'request.body.json', compile);

  // Every failure above adds an issue; the `undefined` checks only narrow the types.
  if (issues.length > 0 || !url || !auth) return { issues };
  return {
    compiled: {
      connectionId: connection.id,
      method: request.method,
      url,
      headers,
      auth,
      ...(body ? { body } : {}),
    },
    issues,
  };
}

/**
 * Compiles a connection for rendering; call once per connection version and keep the result.
 * Throws `TemplateError` naming the connection and the first bad field.
 */
export function compileConnection(connection: Connection): CompiledConnection {
  const { compiled, issues } = compileConnectionParts(connection);
  if (!compiled) {
    const first = issues[0] ?? { field: 'request', reason: 'does not compile' };
    const more =
      issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
    throw new TemplateError(connection.id, first.field, `${first.reason}${more}`);
  }
  return compiled;
}

type Compile = (source: string, context: EscapeContext, field: string) => CompiledField | undefined;

function authHeaderName(auth: RequestTemplate['auth']): string | undefined {
  if (auth.type === 'api_key') return auth.header.toLowerCase();
  return auth.type === 'none' ? undefined : 'authorization';
}

function compileAuth(
  auth: RequestTemplate['auth'],
  compile: Compile,
  issues: ConfigIssue[],
): CompiledAuth | undefined {
  switch (auth.type) {
    case 'none':
      return auth;
    case 'api_key': {
      const prefix = auth.prefix ?? '';
      if (hasHeaderUnsafeChar(prefix)) {
        issues.push({ field: 'request.auth.prefix', reason: 'must not contain control characters' });
      }
      // Headers are a plain object, where this name would set the prototype instead of a key.
      if (auth.header === '__proto__')
        issues.push({ field: 'request.auth.header', reason: 'not a usable header name' });
      const value = compile(auth.value, 'header', 'request.auth.value');
      return value && { type: 'api_key', header: auth.header.toLowerCase(), prefix, value };
    }
    case 'basic': {
      // The auth header is built from these, so they are plain text, checked after rendering.
      const username = compile(auth.username, 'header', 'request.auth.username');
      const password = compile(auth.password, 'header', 'request.auth.password');
      return username && password && { type: 'basic', username, password };
    }
    case 'bearer': {
      const token = compile(auth.token, 'header', 'request.auth.token');
      return token && { type: 'bearer', token };
    }
  }
}

/** `data.attributes.email` for plain keys, `data["first name"]` for the rest. */
export function jsonPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return /^[A-Za-z_$][\w$-]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

function compileJson(node: JsonTemplate, field: string, compile: Compile): CompiledJson | undefined {
  if (typeof node === 'string') {
    let single: boolean;
    try {
      single = isSingleExpression(parseTemplate(node));
    } catch {
      single = false; // compiling again below reports the problem with its field
    }
    const compiled = compile(node, single ? 'value' : 'text', field);
    return compiled && { kind: single ? 'value' : 'text', compiled };
  }
  if (Array.isArray(node)) {
    const items = node.map((item, index) => compileJson(item, jsonPath(field, index), compile));
    return items.every((item) => item !== undefined)
      ? { kind: 'array', items: items as CompiledJson[] }
      : undefined;
  }
  if (node !== null && typeof node === 'object') {
    const entries = Object.entries(node).map(
      ([key, value]) => [key, compileJson(value, jsonPath(field, key), compile)] as const,
    );
    return entries.every(([, value]) => value !== undefined)
      ? { kind: 'object', entries: entries as (readonly [string, CompiledJson])[] }
      : undefined;
  }
  return { kind: 'literal', value: node };
}

/** Every template string of a connection with its field, for walks that need no compiling. */
export function templateSources(connection: Connection): { field: string; source: string }[] {
  const request = connection.request;
  const out = [{ field: 'request.url', source: request.url }];
  const auth = request.auth;
  if (auth.type === 'api_key') out.push({ field: 'request.auth.value', source: auth.value });
  if (auth.type === 'basic') {
    out.push({ field: 'request.auth.username', source: auth.username });
    out.push({ field: 'request.auth.password', source: auth.password });
  }
  if (auth.type === 'bearer') out.push({ field: 'request.auth.token', source: auth.token });
  for (const [name, source] of Object.entries(request.headers))
    out.push({ field: `request.headers.${name}`, source });
  const walk = (node: JsonTemplate, field: string): void => {
    if (typeof node === 'string') out.push({ field, source: node });
    else if (Array.isArray(node)) node.forEach((item, index) => walk(item, jsonPath(field, index)));
    else if (node !== null && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) walk(value, jsonPath(field, key));
    }
  };
  if (request.body) walk(request.body.json, 'request.body.json');
  return out;
}
