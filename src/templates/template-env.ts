import Handlebars from 'handlebars';
import { ESCAPERS, PUBLIC_HELPERS, callHelper, toHandlebarsHelper } from './helpers.js';
import { TemplateProblem, describeFailure } from './problem.js';
import { checkBudget, type HelperSpec, type RenderState } from './render-state.js';
import { BLOCK_HELPERS, rewriteProgram, type EscapeContext, type TemplateOptions } from './template-ast.js';

export { MAX_BLOCK_DEPTH, type EscapeContext, type TemplateOptions } from './template-ast.js';

type Program = hbs.AST.Program;

export const MAX_TEMPLATE_BYTES = 8 * 1024;

/** One environment for the whole product, isolated from the global `Handlebars` others may touch. */
const env = Handlebars.create();
// `log` writes to the console and `lookup` takes computed names, defeating the compile-time checks.
env.unregisterHelper('log');
env.unregisterHelper('lookup');
for (const [name, spec] of Object.entries({ ...PUBLIC_HELPERS, ...ESCAPERS })) {
  env.registerHelper(name, toHandlebarsHelper(name, spec));
}

type BlockFn = ((...args: unknown[]) => string) & Record<string, unknown>;
interface BlockOptions {
  fn: BlockFn;
  inverse: BlockFn;
  data?: { relay?: RenderState };
}

/**
 * `{{#each}}` is the one construct that multiplies work without calling a helper (nested loops
 * over literal text), so each iteration checks the render budget too.
 */
const builtinEach = env.helpers.each as (this: unknown, context: unknown, options: BlockOptions) => string;
env.registerHelper('each', function (this: unknown, context: unknown, options: BlockOptions) {
  const state = options.data?.relay;
  if (!state) throw new TemplateProblem('each: rendered without a render state');
  // Handlebars renders `{{else}}` for a string or number without a word: a loop over a scalar
  // (`{{#each this}}` inside `{{#each attributes}}`, whose items are text) would silently drop its
  // output at every delivery. Absent (null) still takes `{{else}}`, as for an optional field.
  if (context !== null && context !== undefined && typeof context !== 'object') {
    throw new TemplateProblem(
      `{{#each}} goes over a list or an object; this value is ${typeof context === 'string' ? 'text' : `a ${typeof context}`} (use {{#if}} or {{#with}} for one value)`,
    );
  }
  const guarded = (fn: BlockFn): BlockFn =>
    Object.assign(function (this: unknown, ...args: unknown[]) {
      checkBudget(state);
      return fn.apply(this, args);
    }, fn);
  return builtinEach.call(this, context, {
    ...options,
    fn: guarded(options.fn),
    inverse: guarded(options.inverse),
  });
});

const knownHelpers: Record<string, boolean> = {
  log: false,
  lookup: false,
  helperMissing: false,
  blockHelperMissing: false,
  ...Object.fromEntries([...BLOCK_HELPERS].map((name) => [name, true])),
  ...Object.fromEntries(Object.keys({ ...PUBLIC_HELPERS, ...ESCAPERS }).map((name) => [name, true])),
};

const compileOptions: CompileOptions = { strict: true, noEscape: true, knownHelpers, knownHelpersOnly: true };

/** Prototype access stays off; saying so explicitly also stops Handlebars logging each denial. */
const runtimeOptions = { allowProtoPropertiesByDefault: false, allowProtoMethodsByDefault: false };

/** What `Handlebars.compile` does inside, reached for so the template is built now (see below). */
interface CompilerInternals {
  Compiler: new () => { compile(program: Program, options: CompileOptions): unknown };
  JavaScriptCompiler: new () => {
    compile(
      environment: unknown,
      options: CompileOptions,
      context: undefined,
      asObject: true,
    ): TemplateSpecification;
  };
}
type SetUpTemplate = HandlebarsTemplateDelegate & { _setup(options: object): void };

/**
 * Builds the template function at once, the way `compile` does on a template's first render: lazily,
 * that would happen inside the first delivery's render budget (a large SOAP body on a cold process
 * could fail it), and compile errors would surface at the first delivery instead of at load time.
 *
 * Every render of a Handlebars template starts with `_setup`, which re-wraps every registered helper
 * and rebuilds the prototype-access rules: 12% of a drain's CPU in the profile (docs/performance.md).
 * Both depend only on this module's environment (helpers are registered once, at import) and on
 * `runtimeOptions`, which never change, so they are set up once per template and the per-render
 * setup becomes a no-op. `test/unit/templates-env.test.ts` pins this to the installed Handlebars.
 */
function buildTemplate(program: Program): HandlebarsTemplateDelegate {
  const internals = env as unknown as CompilerInternals;
  const options = { ...compileOptions, data: true };
  const environment = new internals.Compiler().compile(program, options);
  const spec = new internals.JavaScriptCompiler().compile(environment, options, undefined, true);
  const template = env.template(spec) as SetUpTemplate;
  template._setup({ ...runtimeOptions });
  template._setup = () => {};
  return template;
}

export interface CompiledTemplate {
  readonly source: string;
  readonly context: EscapeContext;
  /** Names used in `{{secret 'NAME'}}`. */
  readonly secretNames: readonly string[];
  /** Only text and plain `{{name.path}}`s: rendered without Handlebars wherever every path is there. */
  readonly direct: boolean;
  render(data: object, state: RenderState): string;
  /** For the `value` context: the expression's raw value (number, object, ...), not its text. */
  evaluate(data: object, state: RenderState): unknown;
}

/** Parses with the size limit; syntax errors become a `TemplateProblem`. */
export function parseTemplate(source: string, maxBytes = MAX_TEMPLATE_BYTES): Program {
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > maxBytes) {
    throw new TemplateProblem(`template is ${bytes} bytes; the limit is ${maxBytes}`);
  }
  try {
    return env.parse(source);
  } catch (error) {
    throw new TemplateProblem(describeFailure(error), { cause: error });
  }
}

/** `"{{attempt}}"`: exactly one expression and nothing around it, so its value keeps its type. */
export function isSingleExpression(program: Program): boolean {
  return program.body.length === 1 && program.body[0]!.type === 'MustacheStatement';
}

export function compileTemplate(
  source: string,
  context: EscapeContext,
  options: TemplateOptions = {},
): CompiledTemplate {
  const program = parseTemplate(source, options.maxBytes);
  if (context === 'value' && !isSingleExpression(program)) {
    throw new TemplateProblem('a typed value must be exactly one {{expression}}');
  }
  const secretNames = new Set<string>();
  const transformed = rewriteProgram(
    program,
    { context, options, text: '', started: false, baseUrl: false, scoped: 0, secretNames },
    0,
  );
  let template: HandlebarsTemplateDelegate;
  try {
    template = buildTemplate(transformed);
  } catch (error) {
    throw new TemplateProblem(describeFailure(error), { cause: error });
  }
  // Most headers and many body leaves are fixed text: no Handlebars call needed to produce them.
  const literal = !source.includes('{{') && !source.includes('\\');
  const pieces = options.viaHandlebars ? undefined : directPieces(transformed);
  const run = (data: object, state: RenderState): string => {
    if (literal) return source;
    checkBudget(state);
    let output: string | undefined;
    try {
      if (pieces) output = renderDirect(pieces, data, state);
      output ??= template(data, { ...runtimeOptions, data: { relay: state } });
    } catch (error) {
      if (error instanceof TemplateProblem) throw error;
      // No `cause`: the original message may quote a value (an email, a secret) that logs must not see.
      throw new TemplateProblem(describeFailure(error, state.revealed));
    }
    checkBudget(state);
    return output;
  };
  return {
    source,
    context,
    secretNames: [...secretNames].sort(),
    direct: pieces !== undefined,
    render: run,
    evaluate(data, state) {
      state.captured = undefined;
      run(data, state);
      return state.captured;
    },
  };
}

/** Text, or one `{{name.path}}` with the escaper the rewrite wrapped around it. */
type Piece = string | { name: string; escaper: HelperSpec; parts: readonly string[]; optional: boolean };

/**
 * The pieces of a template that is only text and plain `{{name.path}}`s, which most are
 * (`{{email}}`, `Bearer {{secret 'K'}}` is not): rendered without Handlebars, whose per-render
 * setup (a container, frames, a copy of the options) cost more than the lookup itself, a third of
 * a JSON body's render in the profile (docs/performance.md). Anything else (helpers, blocks,
 * `@data`, `../`) answers `undefined` and renders through Handlebars.
 */
function directPieces(program: Program): Piece[] | undefined {
  const pieces: Piece[] = [];
  for (const statement of program.body) {
    if (statement.type === 'ContentStatement') {
      pieces.push((statement as hbs.AST.ContentStatement).value);
      continue;
    }
    if (statement.type === 'CommentStatement') continue;
    if (statement.type !== 'MustacheStatement') return undefined;
    const { path, params, hash } = statement as hbs.AST.MustacheStatement;
    const name = path.type === 'PathExpression' ? (path as hbs.AST.PathExpression).original : '';
    const escaper = Object.hasOwn(ESCAPERS, name) ? ESCAPERS[name] : undefined;
    const [value] = params;
    if (!escaper || hash || params.length !== 1 || value?.type !== 'PathExpression') return undefined;
    const lookup = value as hbs.AST.PathExpression & { strict?: boolean };
    // An empty first segment (`{{[]}}`) is the context itself to Handlebars, whatever follows it.
    if (lookup.data || lookup.depth !== 0 || lookup.parts.length === 0 || lookup.parts[0] === '')
      return undefined;
    if (lookup.original !== lookup.parts.join('.')) return undefined;
    pieces.push({ name, escaper, parts: lookup.parts, optional: lookup.strict !== true });
  }
  return pieces;
}

const NOT_DIRECT = Symbol('not direct');

/**
 * Looks a path up as Handlebars does where every step is an own property of an object (and, for
 * an optional path, where the last step is absent altogether: empty); anything else (a missing
 * name, a step that is not an object, an inherited name) answers NOT_DIRECT, and Handlebars renders
 * it and says what is wrong in its own words.
 */
function lookUp(data: object, parts: readonly string[], optional: boolean): unknown {
  let value: unknown = data;
  for (let i = 0; i < parts.length; i++) {
    if (value === null || typeof value !== 'object') return NOT_DIRECT;
    const part = parts[i]!;
    if (!Object.hasOwn(value, part))
      return optional && i === parts.length - 1 && !(part in value) ? undefined : NOT_DIRECT;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/**
 * The template's output, or `undefined` when one of its paths needs Handlebars to say what it means.
 * Every path is looked up before any escaper runs, so a template handed to Handlebars has had no
 * helper's effect (a captured value, a derived secret) yet.
 */
function renderDirect(pieces: readonly Piece[], data: object, state: RenderState): string | undefined {
  const values: unknown[] = [];
  for (const piece of pieces) {
    if (typeof piece === 'string') continue;
    const value = lookUp(data, piece.parts, piece.optional);
    if (value === NOT_DIRECT) return undefined;
    values.push(value);
  }
  let output = '';
  let next = 0;
  for (const piece of pieces) {
    if (typeof piece === 'string') output += piece;
    else {
      const result = callHelper(piece.name, piece.escaper, [values[next++]], state, data);
      if (result !== null && result !== undefined) output += String(result);
    }
  }
  return output;
}

/** Secret names a template uses, or none if it does not parse (compiling reports that). */
export function secretNamesIn(source: string, options: TemplateOptions = {}): string[] {
  try {
    // Only the names matter here: accept what the connection's own compile would judge.
    return compileTemplate(source, 'text', { ...options, accessToken: true }).secretNames.slice();
  } catch {
    return [];
  }
}
