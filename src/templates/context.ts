import { envSchema } from '../config/env.js';
import type { Connection } from '../config/connection-schema.js';
import type { Unsubscribe } from '../domain/unsubscribe.js';

/**
 * What templates can see. Optional unsubscribe fields are `null` when absent, never missing:
 * strict mode treats a missing key as a typo, while `{{default campaign 'none'}}` must still work.
 */
export interface TemplateContext {
  email: string;
  id: string;
  account: string;
  campaign?: string | null;
  occurredAt?: string | null;
  receivedAt: string;
  source?: string | null;
  /** Free-form per unsubscribe: a missing attribute renders empty instead of failing. */
  attributes: Record<string, string>;
  /** 1 for the first attempt of a delivery. */
  attempt: number;
  settings: Record<string, string | number | boolean>;
  engine: { sandboxUrl: string };
}

/** Where `{{secret 'NAME'}}` gets its values. Returning `undefined` fails the render. */
export interface SecretSource {
  get(name: string): string | undefined;
}

export function templateContext(
  unsubscribe: Unsubscribe,
  connection: Connection,
  attempt: number,
  engine: { sandboxUrl: string },
): TemplateContext {
  // Not a spread of the unsubscribe then a copy: this runs once per delivery (per unsubscribe of a
  // batch), and the spread was a tenth of rendering's CPU (docs/performance.md).
  return declaredFields(unsubscribe, attempt, connection.settings, engine);
}

/**
 * The object handed to Handlebars: a copy, so a template can never see more than the declared
 * fields (whatever the caller passed in), with absent optional fields filled in for strict mode.
 */
export function templateData(context: TemplateContext): TemplateContext {
  return declaredFields(context, context.attempt, context.settings, context.engine);
}

function declaredFields(
  from: Omit<TemplateContext, 'attempt' | 'settings' | 'engine'>,
  attempt: number,
  settings: TemplateContext['settings'],
  engine: TemplateContext['engine'],
): TemplateContext {
  return {
    email: from.email,
    id: from.id,
    account: from.account,
    campaign: from.campaign ?? null,
    occurredAt: from.occurredAt ?? null,
    receivedAt: from.receivedAt,
    source: from.source ?? null,
    attributes: { ...from.attributes },
    attempt,
    settings: { ...settings },
    engine: { sandboxUrl: engine.sandboxUrl },
  };
}

/**
 * Variables a connection may never read as a secret: the engine's own settings (the admin token, a
 * Redis URL with its password) and the process's. Otherwise a connection file could ship them to a CRM.
 */
const RESERVED_SECRET_NAMES = new Set([
  // Every engine setting, so one added later is covered without remembering this list.
  ...Object.keys(envSchema.shape),
  'ADMIN_URL',
  'UNSUB_RELAY_OPERATOR',
  'PATH',
  'HOME',
  'USER',
  'SHELL',
  'PWD',
  'NODE_OPTIONS',
]);
const RESERVED_SECRET_PREFIXES = ['npm_', 'NODE_', 'WORKER_', 'RETENTION_', 'SHUTDOWN_'];

export function isSecretNameAllowed(name: string): boolean {
  return (
    !RESERVED_SECRET_NAMES.has(name) && !RESERVED_SECRET_PREFIXES.some((prefix) => name.startsWith(prefix))
  );
}

/** Secrets from the process environment; an empty variable counts as unset. */
export function envSecrets(env: NodeJS.ProcessEnv = process.env): SecretSource {
  return {
    get(name) {
      if (!isSecretNameAllowed(name)) return undefined;
      // `process.env` is a special object; only its own string entries are variables.
      if (!Object.hasOwn(env, name)) return undefined;
      const value = env[name];
      return typeof value === 'string' && value !== '' ? value : undefined;
    },
  };
}

/** A plausible unsubscribe for dry runs: every optional field absent, so strict mode is exercised. */
export function sampleContext(connection: Connection): TemplateContext {
  return {
    email: 'unsubscribe-test+relay@example.com',
    id: '00000000-0000-4000-8000-000000000000',
    account: connection.account,
    campaign: null,
    occurredAt: null,
    receivedAt: '2024-01-01T00:00:00.000Z',
    source: null,
    attributes: {},
    attempt: 1,
    settings: { ...connection.settings },
    engine: { sandboxUrl: 'http://127.0.0.1:8787/sandbox' },
  };
}

/**
 * What a batched request's templates see outside `$each` (URL, headers, auth, the body around the
 * list): the connection's settings and the batch's size, never one unsubscribe's fields, which
 * differ from item to item (strict mode makes `{{email}}` there an error at validate time).
 */
export function batchTemplateData(items: readonly TemplateContext[]): object {
  const first = items[0]!;
  return {
    account: first.account,
    attempt: Math.max(...items.map((item) => item.attempt)),
    settings: { ...first.settings },
    engine: { sandboxUrl: first.engine.sandboxUrl },
    batch: { size: items.length },
  };
}
