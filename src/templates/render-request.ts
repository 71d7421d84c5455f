import type { Connection } from '../config/connection-schema.js';
import type { RenderedRequest } from '../domain/delivery.js';
import { TemplateError, type ConfigIssue } from '../errors.js';
import {
  compileConnectionParts,
  templateSources,
  type CompiledConnection,
  type CompiledField,
  type CompiledJson,
} from './compile-connection.js';
import { hasHeaderUnsafeChar, hasUrlUnsafeChar } from './chars.js';
import {
  isSecretNameAllowed,
  sampleContext,
  templateData,
  type SecretSource,
  type TemplateContext,
} from './context.js';
import { newRenderState, type RenderState } from './helpers.js';
import { TemplateProblem, describeFailure } from './problem.js';
import { secretNamesIn } from './template-env.js';

export { compileConnection, type CompiledConnection } from './compile-connection.js';
export { envSecrets, templateContext, type SecretSource, type TemplateContext } from './context.js';

type Report = (field: string, reason: string) => void;

/**
 * Renders the request for one unsubscribe. Pure: no I/O, secrets come from `secrets`.
 * Throws `TemplateError(connectionId, field, reason)`; reasons never contain secret values.
 */
export function renderRequest(
  compiled: CompiledConnection,
  context: TemplateContext,
  secrets: SecretSource,
): RenderedRequest {
  return renderWith(compiled, context, secrets, (field, reason) => {
    throw new TemplateError(compiled.connectionId, field, reason);
  });
}

function renderWith(
  compiled: CompiledConnection,
  context: TemplateContext,
  secrets: SecretSource,
  report: Report,
): RenderedRequest {
  const data = templateData(context);
  const state = newRenderState(secrets);
  const sensitive = new Set<string>();
  const attempt = <T>(field: string, work: () => T): T | undefined => {
    try {
      return work();
    } catch (error) {
      report(field, describeFailure(error, [...state.revealed, ...sensitive]));
      return undefined;
    }
  };
  const text = (compiledField: CompiledField) => compiledField.template.render(data, state);
  const header = (compiledField: CompiledField) => {
    const value = text(compiledField);
    if (hasHeaderUnsafeChar(value)) {
      throw new TemplateProblem(
        'the value contains a control character (CR, LF, NUL, ...); refusing to send it',
      );
    }
    return value;
  };

  const url = attempt(compiled.url.field, () => checkedUrl(text(compiled.url))) ?? '';
  const headers: Record<string, string> = {};
  for (const { name, value } of compiled.headers) {
    const rendered = attempt(value.field, () => header(value));
    if (rendered !== undefined) headers[name] = rendered;
  }

  const auth = compiled.auth;
  const setAuth = (name: string, value: string, ...raw: string[]) => {
    headers[name] = value;
    for (const secret of [value, ...raw]) sensitive.add(secret);
  };
  if (auth.type === 'api_key') {
    const key = attempt(auth.value.field, () => header(auth.value));
    if (key !== undefined) setAuth(auth.header, `${auth.prefix}${key}`, key);
  } else if (auth.type === 'bearer') {
    const token = attempt(auth.token.field, () => header(auth.token));
    if (token !== undefined) setAuth('authorization', `Bearer ${token}`, token);
  } else if (auth.type === 'basic') {
    const username = attempt(auth.username.field, () => {
      const value = header(auth.username);
      // RFC 7617: the first colon ends the user-id, so one inside it would shift the password.
      if (value.includes(':')) throw new TemplateProblem('the username must not contain ":"');
      return value;
    });
    const password = attempt(auth.password.field, () => header(auth.password));
    if (username !== undefined && password !== undefined) {
      const credentials = Buffer.from(`${username}:${password}`, 'utf8').toString('base64');
      setAuth('authorization', `Basic ${credentials}`, credentials, password);
    }
  }

  let body: string | undefined;
  if (compiled.body) {
    const value = renderJson(compiled.body, data, state, attempt);
    body = JSON.stringify(value);
    if (!Object.hasOwn(headers, 'content-type')) headers['content-type'] = 'application/json';
  }

  return {
    method: compiled.method,
    url,
    headers,
    ...(body !== undefined ? { body } : {}),
    secrets: secretVariants([...state.revealed, ...sensitive]),
  };
}

function checkedUrl(rendered: string): string {
  // The URL parser quietly strips tabs, newlines and edge spaces; refuse them instead.
  if (hasUrlUnsafeChar(rendered)) {
    throw new TemplateProblem('the URL contains spaces or control characters outside {{...}}');
  }
  let url: URL;
  try {
    url = new URL(rendered);
  } catch {
    throw new TemplateProblem('the rendered URL is not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TemplateProblem(`the URL must be http or https, not ${url.protocol.replace(/:$/, '')}`);
  }
  // Sent as rendered rather than as `url.href`: normalising could re-encode a secret into a form
  // the redaction list does not hold.
  return rendered;
}

type Attempt = <T>(field: string, work: () => T) => T | undefined;

function renderJson(node: CompiledJson, data: object, state: RenderState, attempt: Attempt): unknown {
  switch (node.kind) {
    case 'literal':
      return node.value;
    case 'text':
      return attempt(node.compiled.field, () => node.compiled.template.render(data, state)) ?? '';
    case 'value':
      return (
        attempt(node.compiled.field, () => jsonValue(node.compiled.template.evaluate(data, state))) ?? null
      );
    case 'array':
      return node.items.map((item) => renderJson(item, data, state, attempt));
    case 'object':
      // fromEntries defines own properties, so a `__proto__` key stays a key.
      return Object.fromEntries(
        node.entries.map(([key, value]) => [key, renderJson(value, data, state, attempt)]),
      );
  }
}

function jsonValue(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new TemplateProblem('the value is not a finite number');
  }
  if (['string', 'number', 'boolean', 'object'].includes(typeof value)) return value;
  throw new TemplateProblem(`a ${typeof value} cannot be written as JSON`);
}

/** Each secret as written raw, inside a JSON string and percent-encoded, so redaction finds all three. */
function secretVariants(values: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const value of values) {
    if (value === '') continue;
    out.add(value);
    out.add(JSON.stringify(value).slice(1, -1));
    try {
      out.add(encodeURIComponent(value));
    } catch {
      // lone surrogates cannot be percent-encoded, so they cannot appear encoded either
    }
  }
  return [...out];
}

const placeholderSecrets: SecretSource = { get: (name) => `placeholder-secret-${name}` };

/**
 * Validates every template of a connection without sending anything: compiles, then renders
 * with sample unsubscribes (with and without the optional fields) and placeholder secrets, so
 * unknown variables and helpers show up at `validate`, not at delivery. Issues name the field;
 * the caller adds the file.
 */
export function checkTemplates(connection: Connection): ConfigIssue[] {
  const { compiled, issues } = compileConnectionParts(connection);
  if (!compiled) return issues;
  const bare = sampleContext(connection);
  const full: TemplateContext = {
    ...bare,
    campaign: Array.isArray(connection.campaigns)
      ? (connection.campaigns[0] ?? 'sample-campaign')
      : 'sample-campaign',
    occurredAt: bare.receivedAt,
    source: 'api',
  };
  // One reason per field: the second sample often trips over the same mistake differently.
  const seen = new Set<string>();
  for (const { field, source } of templateSources(connection)) {
    for (const name of secretNamesIn(source)) {
      if (!isSecretNameAllowed(name) && !seen.has(field)) {
        issues.push({
          field,
          reason: `{{secret '${name}'}}: ${name} is the engine's own setting or a system variable, not a connection secret`,
        });
        seen.add(field);
      }
    }
  }
  for (const context of [bare, full]) {
    renderWith(compiled, context, placeholderSecrets, (field, reason) => {
      if (!seen.has(field)) issues.push({ field, reason });
      seen.add(field);
    });
  }
  return issues;
}

/** Secret names a connection reads with `{{secret 'NAME'}}`, sorted, for "is everything set?" checks. */
export function referencedSecrets(connection: Connection): string[] {
  const names = new Set<string>();
  for (const { source } of templateSources(connection))
    for (const name of secretNamesIn(source)) names.add(name);
  return [...names].sort();
}
