import type { Connection, RequestTemplate } from '../config/connection-schema.js';
import { TemplateError, type ConfigIssue } from '../errors.js';
import { authHeaderNames, compileAuth, type CompiledAuth } from './compile-auth.js';
import {
  bodySources,
  compileBody,
  type Compile,
  type CompiledBody,
  type CompiledField,
} from './compile-body.js';
import { describeFailure } from './problem.js';
import { compileTemplate, type TemplateOptions } from './template-env.js';

export { jsonPath, type CompiledBody, type CompiledField, type CompiledJson } from './compile-body.js';
export type { CompiledAuth, CompiledHmac, CompiledOAuth2 } from './compile-auth.js';

/** Everything a connection renders, compiled once per connection version. */
export interface CompiledConnection {
  readonly connectionId: string;
  readonly method: RequestTemplate['method'];
  readonly url: CompiledField;
  /** Names are lowercased. */
  readonly headers: readonly { readonly name: string; readonly value: CompiledField }[];
  readonly auth: CompiledAuth;
  readonly body?: CompiledBody;
}

/** Headers the sender owns: setting them by hand breaks framing or routing. */
const SENDER_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection']);

/** What every template of this connection may refer to, checked at compile time. */
export function templateOptions(connection: Connection): TemplateOptions {
  return {
    settings: Object.keys(connection.settings),
    accessToken: connection.request.auth.type === 'oauth2_client_credentials',
  };
}

/** Compiles every template of a connection, reporting every problem rather than the first. */
export function compileConnectionParts(connection: Connection): {
  compiled?: CompiledConnection;
  issues: ConfigIssue[];
} {
  const issues: ConfigIssue[] = [];
  const base = templateOptions(connection);
  const compile: Compile = (source, context, field, options) => {
    try {
      return { field, template: compileTemplate(source, context, { ...base, ...options }) };
    } catch (error) {
      issues.push({ field, reason: describeFailure(error) });
      return undefined;
    }
  };
  const request = connection.request;
  const url = compile(request.url, 'url', 'request.url');
  const authHeaders = authHeaderNames(request.auth);

  const headers: { name: string; value: CompiledField }[] = [];
  const seen = new Map<string, string>();
  for (const [original, source] of Object.entries(request.headers)) {
    const name = original.toLowerCase();
    const field = `request.headers.${original}`;
    const clash = seen.get(name);
    let reason: string | undefined;
    if (clash !== undefined) reason = `same header as ${clash} (header names ignore case)`;
    else if (authHeaders.includes(name))
      reason = `set by request.auth (${request.auth.type}); remove one of them`;
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
  const contentTypeHeader = seen.get('content-type');
  if (request.body?.contentType !== undefined && contentTypeHeader !== undefined) {
    issues.push({
      field: 'request.body.contentType',
      reason: `also set by request.headers.${contentTypeHeader}; remove one of them`,
    });
  }
  const body = request.body && compileBody(request.body, compile, issues);

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

export interface TemplateSource {
  readonly field: string;
  readonly source: string;
  readonly maxBytes?: number;
}

/** Every template string of a connection with its field, for walks that need no compiling. */
export function templateSources(connection: Connection): TemplateSource[] {
  const request = connection.request;
  const out: TemplateSource[] = [{ field: 'request.url', source: request.url }];
  const auth = request.auth;
  const add = (name: string, source: string | undefined) => {
    if (source !== undefined) out.push({ field: `request.auth.${name}`, source });
  };
  if (auth.type === 'api_key') add('value', auth.value);
  if (auth.type === 'basic') {
    add('username', auth.username);
    add('password', auth.password);
  }
  if (auth.type === 'bearer') add('token', auth.token);
  if (auth.type === 'oauth2_client_credentials') {
    add('tokenUrl', auth.tokenUrl);
    add('clientId', auth.clientId);
    add('clientSecret', auth.clientSecret);
    add('scope', auth.scope);
    add('audience', auth.audience);
    for (const [name, source] of Object.entries(auth.params)) add(`params.${name}`, source);
  }
  if (auth.type === 'hmac') {
    add('secret', auth.secret);
    if (auth.scheme === 'custom') add('payload', auth.payload);
  }
  for (const [name, source] of Object.entries(request.headers))
    out.push({ field: `request.headers.${name}`, source });
  if (request.body) out.push(...bodySources(request.body));
  return out;
}
