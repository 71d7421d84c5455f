import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { SecretSource } from './context.js';
import { TemplateProblem } from './problem.js';

/**
 * Handlebars renders synchronously, so a slow template (nested `{{#each}}`, huge attribute lists)
 * would block the worker's event loop; every helper call and loop iteration checks this budget.
 */
// Generous on purpose: the budget stops runaway templates (huge #each), and must not fail a normal
// render on a worker whose CPU is busy, which would turn load into permanent failures.
export const RENDER_BUDGET_MS = 250;

/** Clocks and randomness for one render; tests inject fixed ones, production takes the defaults. */
export interface RenderOptions {
  /** Wall clock in ms since the epoch, for `{{now}}` and HMAC timestamps. Default `Date.now`. */
  now?: () => number;
  /** Monotonic ms, for the render budget only. Default `performance.now`. */
  timer?: () => number;
  /** Source of `{{uuid}}` values. Default `crypto.randomUUID`. */
  uuid?: () => string;
}

/** Per-render state, reachable by helpers only (through the `@relay` data frame). */
export interface RenderState {
  readonly secrets: SecretSource;
  /** Every string this render derived from a secret; all of them must be redacted. */
  readonly revealed: Set<string>;
  /** The raw value of a single-expression JSON leaf, so `"{{attempt}}"` stays a number. */
  captured: unknown;
  /** The render's instant, read once: every `{{now}}` and the signature timestamp agree. */
  readonly now: number;
  readonly timer: () => number;
  readonly startedAt: number;
  readonly uuid: () => string;
  /** The `{{uuid}}` values this render produced, in order, so a caller can record them. */
  readonly uuids: string[];
}

export function newRenderState(secrets: SecretSource, options: RenderOptions = {}): RenderState {
  const timer = options.timer ?? (() => performance.now());
  return {
    secrets,
    revealed: new Set(),
    captured: undefined,
    now: (options.now ?? Date.now)(),
    timer,
    startedAt: timer(),
    uuid: options.uuid ?? randomUUID,
    uuids: [],
  };
}

export function checkBudget(state: RenderState): void {
  if (state.timer() - state.startedAt > RENDER_BUDGET_MS) {
    throw new TemplateProblem(`render took longer than ${RENDER_BUDGET_MS} ms`);
  }
}

export interface HelperSpec {
  readonly min: number;
  readonly max: number;
  /** `root` is the template's data (the context), for helpers that read it by name. */
  readonly fn: (args: unknown[], state: RenderState, root: unknown) => unknown;
}

function kindOf(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** Text for a value: objects and lists are refused, as `[object Object]` is never what was meant. */
export function toText(value: unknown, who: string): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  throw new TemplateProblem(`${who}: got ${kindOf(value)}, not text; use {{json ...}} to write it as JSON`);
}

export const text =
  (name: string, transform: (input: string) => string): HelperSpec['fn'] =>
  ([value]) =>
    transform(toText(value, name));
