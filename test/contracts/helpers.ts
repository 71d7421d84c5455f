/**
 * Shared helpers for the CRM contract tests: load an example connection the way the engine does,
 * render it for an unsubscribe, and check the rendered request against the CRM's published
 * OpenAPI spec (vendored, gzipped, under ./specs) with openapi-backend's validator.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import ajvFormats from 'ajv-formats';
import { load as loadYaml } from 'js-yaml';
import { OpenAPIBackend, type Document, type Operation } from 'openapi-backend';
import converter from 'swagger2openapi';
import { expect } from 'vitest';
import type { Connection } from '../../src/config/connection-schema.js';
import { parseConnectionFile } from '../../src/config/load-connections.js';
import type { RenderedRequest, SendOutcome, Verdict } from '../../src/domain/delivery.js';
import type { Unsubscribe } from '../../src/domain/unsubscribe.js';
import { ruleValueResolver } from '../../src/queue/rule-values.js';
import { classify } from '../../src/rules/classify.js';
import {
  compileConnection,
  referencedSecrets,
  renderRequest,
  templateContext,
  type CompiledConnection,
  type RenderOptions,
  type SecretSource,
  type TemplateContext,
} from '../../src/templates/render-request.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

/** The addresses every example is rendered for. */
export const EMAILS = {
  /** An apostrophe and a `+` tag: `+` must not turn into a space, `'` must not break quoting. */
  apostrophePlus: "o'brien+news@example.com",
  /** Mixed case: CRMs that key on the address (MD5, path) must see it as they document. */
  upper: 'UPPER.Case@Example.COM',
  /** A Unicode (SMTPUTF8) local part, for CRMs that accept one. */
  unicode: 'zoë.ñandú@example.com',
} as const;

/** Each address as it must appear in a URL path: `+` as %2B, Unicode as UTF-8 percent-escapes, `@` kept. */
export const IN_PATH: Record<string, string> = {
  [EMAILS.apostrophePlus]: "o'brien%2Bnews@example.com",
  [EMAILS.upper]: 'UPPER.Case@Example.COM',
  [EMAILS.unicode]: 'zo%C3%AB.%C3%B1and%C3%BA@example.com',
};

export const RECEIVED_AT = '2026-11-23T11:27:35.170Z';
export const UNSUBSCRIBE_ID = '6dfceccb-16dd-477f-8872-7db247330e33';
const engine = { sandboxUrl: 'http://127.0.0.1:8787/sandbox' };

export interface Example {
  file: string;
  /** The file as written, comments included. */
  text: string;
  connection: Connection;
  compiled: CompiledConnection;
}

/** Parses `connections/examples/<name>.yaml` exactly as `validate` and the engine do; any issue fails. */
export function loadExample(name: string): Example {
  const file = path.join('connections', 'examples', `${name}.yaml`);
  const text = readFileSync(path.join(root, file), 'utf8');
  const { connection, issues } = parseConnectionFile(text, file);
  expect(issues).toEqual([]);
  if (!connection) throw new Error(`${file} did not parse`);
  expect(text.startsWith('# yaml-language-server: $schema=../../schema/connection.schema.json\n')).toBe(true);
  return { file, text, connection, compiled: compileConnection(connection) };
}

/**
 * The example documents itself: a header comment linking the CRM's docs and naming every setting and
 * secret it uses, and it is an example (account `example`, linked to no campaign until an operator
 * links it).
 */
export function expectSelfDocumented(example: Example, secrets: string[]): void {
  const header = example.text
    .split('\n')
    .slice(1)
    .filter((line, i, lines) => lines.slice(0, i + 1).every((l) => l.startsWith('#')))
    .join('\n');
  expect(header).toMatch(/^# Docs: https:\/\/\S+$/m);
  for (const name of Object.keys(example.connection.settings))
    expect(header).toMatch(new RegExp(`^#   ${name} `, 'm'));
  if (Object.keys(example.connection.settings).length === 0) expect(header).toContain('# Settings: none.');
  for (const name of secrets) expect(header).toMatch(new RegExp(`^#   ${name} `, 'm'));
  expect(referencedSecrets(example.connection)).toEqual([...secrets].sort());
  expect(example.connection).toMatchObject({ account: 'example', campaigns: [], enabled: true });
  expect(example.connection.id).toBe(`example-${path.basename(example.file, '.yaml')}`);
}

/** Secrets from a fixed map; reading any other name fails the render, as a missing env var would. */
export function fixedSecrets(values: Record<string, string>): SecretSource {
  return { get: (name) => (Object.hasOwn(values, name) ? values[name] : undefined) };
}

export function unsubscribeFor(email: string, extra: Partial<Unsubscribe> = {}): Unsubscribe {
  return {
    id: UNSUBSCRIBE_ID,
    account: 'example',
    email,
    receivedAt: RECEIVED_AT,
    attributes: {},
    ...extra,
  };
}

export function contextFor(example: Example, email: string, extra: Partial<Unsubscribe> = {}) {
  return templateContext(unsubscribeFor(email, extra), example.connection, 1, engine);
}

/**
 * Fixed clocks for rendering. The 50 ms render budget guards production workers against runaway
 * templates (unit-tested in test/unit); measured here it made the first render of a file flaky on
 * a loaded machine (Handlebars compiles lazily, and the specs load alongside), so the budget's
 * timer stands still and the contract tests stay deterministic.
 */
export const RENDER_OPTIONS: RenderOptions = {
  now: () => Date.parse(RECEIVED_AT),
  timer: () => 0,
  uuid: () => '00000000-0000-4000-8000-0000000000aa',
};

/** Renders the delivery request for one address (for OAuth2 connections, with a given access token). */
export function render(
  example: Example,
  secrets: SecretSource,
  email: string,
  auth?: { accessToken: string },
): RenderedRequest {
  return renderRequest(example.compiled, contextFor(example, email), secrets, auth, RENDER_OPTIONS);
}

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

/** What the CRM answered, in the shape the sender hands to `classify`. */
export interface CrmAnswer {
  status: number;
  body?: string | object;
  headers?: Record<string, string>;
}

/** A CRM answer as the sender hands it to the rules (header names lower-cased, body as text). */
function outcomeOf(answer: CrmAnswer): SendOutcome {
  const body =
    answer.body === undefined
      ? ''
      : typeof answer.body === 'string'
        ? answer.body
        : JSON.stringify(answer.body);
  return {
    kind: 'response',
    status: answer.status,
    headers: Object.fromEntries(Object.entries(answer.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    body,
    bodyTruncated: false,
    durationMs: 42,
  };
}

/** The example's verdict on a (documented) CRM answer, as the worker would decide it. */
export function verdictOn(
  example: Example,
  answer: CrmAnswer,
  email: string = EMAILS.apostrophePlus,
): Verdict {
  const outcome = outcomeOf(answer);
  const context = contextFor(example, email);
  return classify(
    example.connection.response.rules,
    outcome,
    Date.parse(RECEIVED_AT),
    ruleValueResolver(context),
  );
}

// ---------------------------------------------------------------------------------------------
// Batches

/**
 * One template context per address, each its own unsubscribe (its own id), as the deliveries of
 * one batch are; in the batch's order.
 */
export function batchContexts(example: Example, emails: readonly string[]): TemplateContext[] {
  return emails.map((email, index) =>
    templateContext(
      unsubscribeFor(email, { id: `${UNSUBSCRIBE_ID.slice(0, -4)}${index.toString(16).padStart(4, '0')}` }),
      example.connection,
      1,
      engine,
    ),
  );
}

/**
 * Renders the one request a batched connection sends for these addresses, as the worker does:
 * `$each` once per address, everything else from the batch (settings, account, `batch.size`).
 */
export function renderBatch(
  example: Example,
  secrets: SecretSource,
  emails: readonly string[],
  auth?: { accessToken: string },
): RenderedRequest {
  expect(example.connection.batch, `${example.file} has no batch`).toBeDefined();
  const items = batchContexts(example, emails);
  return renderRequest(example.compiled, items[0]!, secrets, auth, RENDER_OPTIONS, items);
}

/**
 * Each delivery's verdict on one (documented) answer to a batched request, in the batch's order,
 * as the worker decides them: the same rules, with templated values (`contains: '{{email}}'`)
 * rendered for each delivery. When every one is `fail` the engine splits the batch instead.
 */
export function verdictsOn(example: Example, answer: CrmAnswer, emails: readonly string[]): Verdict[] {
  const outcome = outcomeOf(answer);
  return batchContexts(example, emails).map((context) =>
    classify(example.connection.response.rules, outcome, Date.parse(RECEIVED_AT), ruleValueResolver(context)),
  );
}

/**
 * A batch variant (`<name>-batch`) keeps its original's target, auth, settings, retry and limits,
 * with a rate no higher (a batched connection's limits count requests), and says in its header
 * where its per-request maximum comes from.
 */
export function expectBatchVariantOf(batch: Example, original: Example): void {
  expect(batch.connection.id).toBe(`${original.connection.id}-batch`);
  expect(batch.connection.batch).toMatchObject({ maxWait: 1_000 });
  expect(batch.text).toMatch(/^# Per-request maximum: /m);
  expect(batch.text).toMatch(/^# Per-item results: /m);
  const { body: _batchBody, ...request } = batch.connection.request;
  const { body: _originalBody, ...originalRequest } = original.connection.request;
  expect(request).toEqual(originalRequest);
  expect(batch.connection.request.body?.contentType).toBe(original.connection.request.body?.contentType);
  expect(batch.connection.settings).toEqual(original.connection.settings);
  expect(batch.connection.retry).toEqual(original.connection.retry);
  const [limits, was] = [batch.connection.limits, original.connection.limits];
  for (const key of ['perSecond', 'burst', 'concurrency'] as const) {
    if (was[key] !== undefined)
      expect(limits[key] ?? Infinity, `limits.${key}`).toBeLessThanOrEqual(was[key]);
  }
}

// ---------------------------------------------------------------------------------------------
// Published specs

interface SpecSource {
  file: string;
  sha256: string;
}

function specSources(): Map<string, SpecSource> {
  const text = readFileSync(path.join(here, 'specs', 'SOURCES.txt'), 'utf8');
  const out = new Map<string, SpecSource>();
  for (const line of text.split('\n')) {
    const match = /^(\S+\.gz)\s+([0-9a-f]{64})\s/.exec(line);
    if (match) out.set(match[1]!, { file: match[1]!, sha256: match[2]! });
  }
  return out;
}

export interface SpecCheck {
  /** Everything the spec says is wrong with the request; empty when it conforms. */
  errors: string[];
  /** The operation the request routed to. */
  operationId: string | undefined;
  /** Path parameters as the spec's router decoded them from the URL. */
  params: Record<string, string>;
  /** Query parameters as parsed. */
  query: Record<string, unknown>;
  /** The body as the validator saw it (parsed JSON or form fields). */
  body: unknown;
}

export interface CheckOptions {
  /**
   * The base URL the request must start with, when it is not one of the spec's `servers` (a
   * per-account host such as Mailchimp's data centre, or a renamed host).
   */
  base?: string;
}

export interface LoadOptions {
  /**
   * For each operation a test sends a body to: the media type, as the spec names it, whose schema
   * the body must match. openapi-backend validates only `application/json` and form bodies, so a
   * JSON:API (`application/vnd.api+json`) schema is handed to it as JSON and a form schema filed
   * under a non-standard name (Mailgun's `application/form-data`) as a form; the request's own
   * content type is still checked against the names the spec lists.
   */
  bodies?: Record<string, string>;
  /**
   * The request's content type under the name the spec uses for it, where they differ
   * (`{ 'application/x-www-form-urlencoded': 'application/form-data' }`).
   */
  mediaTypeAliases?: Record<string, string>;
  /** Corrects a documented defect in the spec, in memory only. Say why where it is used. */
  adjust?: (document: Document) => void;
}

export interface ContractSpec {
  readonly document: Document;
  operation(operationId: string): Operation;
  /** Checks a rendered request against the operation it must route to. */
  check(request: RenderedRequest, operationId: string, options?: CheckOptions): SpecCheck;
  /** Checks a (documented) response body against the operation's response schema for that status. */
  checkResponse(operationId: string, status: number, body: unknown): string[];
}

const FORM = 'application/x-www-form-urlencoded';
const isJsonMediaType = (type: string) =>
  type === 'application/json' || /^application\/[\w.+-]+\+json$/.test(type);
const isFormMediaType = (type: string) =>
  [FORM, 'multipart/form-data', 'application/form-data'].includes(type.toLowerCase());

interface MediaTypes {
  content?: Record<string, unknown>;
  required?: boolean;
  $ref?: string;
}
interface RawOperation {
  operationId?: unknown;
  requestBody?: MediaTypes;
  responses?: Record<string, MediaTypes>;
}
interface RawDocument {
  swagger?: string;
  paths?: Record<string, Record<string, RawOperation | unknown>>;
  components?: { requestBodies?: Record<string, MediaTypes>; responses?: Record<string, MediaTypes> };
}

/** `{ $ref: '#/components/<kind>/<name>' }` resolved one level; anything else as it is. */
function resolved(document: RawDocument, kind: 'requestBodies' | 'responses', value?: MediaTypes) {
  const name = value?.$ref?.match(new RegExp(`^#/components/${kind}/(.+)$`))?.[1];
  return name === undefined ? value : document.components?.[kind]?.[name];
}

/** Every operation of a raw (not yet dereferenced) document. */
function* rawOperations(document: RawDocument): Generator<RawOperation & { operationId: string }> {
  for (const item of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(item)) {
      const candidate = operation as RawOperation | null;
      if (candidate && typeof candidate === 'object' && typeof candidate.operationId === 'string') {
        yield candidate as RawOperation & { operationId: string };
      }
    }
  }
}

/**
 * Loads a vendored spec once: checks its sha256 against SOURCES.txt, parses it (Swagger 2.0 is
 * converted to OpenAPI 3 with swagger2openapi first), applies `adjust` and builds an
 * openapi-backend validator with ajv-formats, so `format: email` and friends are enforced.
 */
export async function loadSpec(file: string, options: LoadOptions = {}): Promise<ContractSpec> {
  const source = specSources().get(file);
  if (!source) throw new Error(`${file} is not listed in test/contracts/specs/SOURCES.txt`);
  const raw = gunzipSync(readFileSync(path.join(here, 'specs', file)));
  expect(createHash('sha256').update(raw).digest('hex'), `${file} differs from its published source`).toBe(
    source.sha256,
  );
  const text = raw.toString('utf8');
  // js-yaml rather than `yaml`: the Brevo spec has flow collections that only lenient parsers accept.
  let document = (file.endsWith('.json.gz') ? JSON.parse(text) : loadYaml(text)) as RawDocument;
  if (document.swagger === '2.0') {
    const converted = await converter.convertObj(document as never, { patch: true, warnOnly: true });
    document = converted.openapi as unknown as RawDocument;
  }
  options.adjust?.(document as unknown as Document);

  // The media types each operation declares, before the validator's copy is narrowed below.
  const declared = new Map<string, string[]>();
  for (const operation of rawOperations(document)) {
    const body = resolved(document, 'requestBodies', operation.requestBody);
    declared.set(operation.operationId, Object.keys(body?.content ?? {}));
    const mediaType = options.bodies?.[operation.operationId];
    if (mediaType === undefined) continue;
    const media = body?.content?.[mediaType];
    if (!body || !media) throw new Error(`${operation.operationId} declares no ${mediaType} body`);
    const as = isJsonMediaType(mediaType)
      ? 'application/json'
      : isFormMediaType(mediaType)
        ? FORM
        : undefined;
    if (!as) throw new Error(`no validator for ${mediaType} bodies`);
    operation.requestBody = { ...(body.required ? { required: true } : {}), content: { [as]: media } };
  }
  // Likewise for answers: a JSON:API (`+json`) response schema is checked as JSON, and so is one
  // filed under `*/*` (HubSpot's error responses, which are JSON on the wire).
  for (const operation of rawOperations(document)) {
    for (const value of Object.values(operation.responses ?? {})) {
      const content = resolved(document, 'responses', value)?.content;
      if (!content || content['application/json']) continue;
      const json = Object.keys(content).find((type) => isJsonMediaType(type) || type === '*/*');
      if (json) content['application/json'] = content[json];
    }
  }

  const api = new OpenAPIBackend({
    definition: document as unknown as Document,
    quick: true,
    validate: true,
    customizeAjv: (ajv) => {
      ajvFormats.default(ajv);
      return ajv;
    },
  });
  await api.init();
  return new Spec(api, api.definition, declared, options);
}

class Spec implements ContractSpec {
  constructor(
    private readonly api: OpenAPIBackend,
    readonly document: Document,
    private readonly declared: Map<string, string[]>,
    private readonly options: LoadOptions,
  ) {}

  operation(operationId: string): Operation {
    const operation = this.api.router.getOperation(operationId);
    if (!operation) throw new Error(`the spec has no operation ${operationId}`);
    return operation;
  }

  check(request: RenderedRequest, operationId: string, options: CheckOptions = {}): SpecCheck {
    const errors: string[] = [];
    const operation = this.operation(operationId);
    const url = new URL(request.url);

    // 1. Server: the request goes to one of the spec's servers (or the given base).
    const servers = options.base
      ? [options.base]
      : ((operation.servers ?? this.document.servers ?? []) as Array<{ url: string }>).map((s) => s.url);
    const server = servers.find((base) => {
      const b = new URL(base);
      const basePath = b.pathname.replace(/\/+$/, '');
      return (
        b.origin === url.origin && (url.pathname === basePath || url.pathname.startsWith(`${basePath}/`))
      );
    });
    if (!server)
      errors.push(`server: ${url.origin}${url.pathname} is not under any of ${servers.join(', ')}`);
    const basePath = server ? new URL(server).pathname.replace(/\/+$/, '') : '';
    const relative = url.pathname.slice(basePath.length) + url.search;

    // 2. Routing: method + path reach the intended operation (and not a neighbour).
    const routed = this.api.router.matchOperation({
      method: request.method.toLowerCase(),
      path: relative,
      headers: request.headers,
    });
    if (routed?.operationId !== operationId) {
      errors.push(
        `route: ${request.method} ${relative} matches ${routed?.operationId ?? 'no operation'}, not ${operationId}`,
      );
    }

    // 3. Media type: the body is sent as a type the operation accepts, and its schema is the one checked.
    const contentType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const accepted = this.declared.get(operationId) ?? [];
    let body: unknown = request.body;
    if (request.body !== undefined) {
      const named = this.options.mediaTypeAliases?.[contentType] ?? contentType;
      if (accepted.length === 0) errors.push(`body: ${operationId} takes no request body`);
      else if (!accepted.includes(named)) {
        errors.push(`content-type: ${contentType || '(none)'} is not one of ${accepted.join(', ')}`);
      } else if (this.options.bodies?.[operationId] !== named) {
        errors.push(`body: load the spec with bodies: { '${operationId}': '${named}' } to check this body`);
      } else {
        body = isFormMediaType(named) ? formFields(request.body) : safeJson(request.body, errors);
      }
    } else if ((operation.requestBody as MediaTypes | undefined)?.required) {
      errors.push(`body: ${operationId} requires a request body`);
    }

    // 4. Parameters and body schema.
    const req = { method: request.method.toLowerCase(), path: relative, headers: request.headers, body };
    const parsed = this.api.router.parseRequest(req, operation);
    const result = this.api.validator.validateRequest(req, operation);
    for (const error of result.errors ?? []) {
      errors.push(`schema: ${error.instancePath || '/'} ${error.message ?? error.keyword}`);
    }

    // 5. Security: the request satisfies one of the operation's security requirements.
    const security = (operation.security ?? this.document.security ?? []) as Array<Record<string, string[]>>;
    if (security.length > 0 && !security.some((requirement) => this.satisfies(requirement, request, url))) {
      errors.push(`security: none of ${JSON.stringify(security)} is satisfied`);
    }

    return {
      errors,
      operationId: routed?.operationId,
      params: parsed.params as Record<string, string>,
      query: parsed.query as Record<string, unknown>,
      body,
    };
  }

  private satisfies(requirement: Record<string, string[]>, request: RenderedRequest, url: URL): boolean {
    const schemes = (this.document.components?.securitySchemes ?? {}) as unknown as Record<
      string,
      Record<string, string>
    >;
    return Object.keys(requirement).every((name) => {
      const scheme = schemes[name];
      if (!scheme) return false;
      const authorization = request.headers.authorization ?? '';
      if (scheme.type === 'http' && scheme.scheme?.toLowerCase() === 'basic') {
        const match = /^Basic ([A-Za-z0-9+/]+=*)$/.exec(authorization);
        return !!match && Buffer.from(match[1]!, 'base64').toString('utf8').includes(':');
      }
      if (scheme.type === 'http' && scheme.scheme?.toLowerCase() === 'bearer')
        return /^Bearer \S+$/.test(authorization);
      if (scheme.type === 'oauth2' || scheme.type === 'openIdConnect')
        return /^Bearer \S+$/.test(authorization);
      if (scheme.type === 'apiKey' && scheme.in === 'header')
        return !!request.headers[scheme.name!.toLowerCase()];
      if (scheme.type === 'apiKey' && scheme.in === 'query') return url.searchParams.has(scheme.name!);
      return false;
    });
  }

  checkResponse(operationId: string, status: number, body: unknown): string[] {
    // Say so when the spec has no JSON schema for this answer, rather than passing vacuously.
    const responses = (this.operation(operationId).responses ?? {}) as Record<string, { content?: object }>;
    const response =
      responses[String(status)] ?? responses[`${Math.floor(status / 100)}XX`] ?? responses.default;
    if (!response?.content || !('application/json' in response.content)) {
      throw new Error(`${operationId} documents no JSON body for status ${status}`);
    }
    const result = this.api.validator.validateResponse(body, operationId, status);
    return (result.errors ?? []).map(
      (error) => `${error.instancePath || '/'} ${error.message ?? error.keyword}`,
    );
  }
}

function safeJson(text: string, errors: string[]): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    errors.push(`body: not JSON (${(error as Error).message})`);
    return undefined;
  }
}

/** Form fields as a server parses them: `+` is a space, a repeated field is a list. */
export function formFields(text: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const seen = out[key];
    out[key] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
  }
  return out;
}
