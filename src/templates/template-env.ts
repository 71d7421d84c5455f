import Handlebars from 'handlebars';
import { ESCAPERS, PUBLIC_HELPERS, arity, toHandlebarsHelper, type RenderState } from './helpers.js';
import { TemplateProblem, describeFailure } from './problem.js';

type Program = hbs.AST.Program;
type Statement = hbs.AST.Statement;
type Expression = hbs.AST.Expression;
type PathExpression = hbs.AST.PathExpression;
type SubExpression = hbs.AST.SubExpression;
type MustacheStatement = hbs.AST.MustacheStatement;
type BlockStatement = hbs.AST.BlockStatement;

/** Where a template's output lands; decides how every `{{...}}` is escaped. */
export type EscapeContext = 'url' | 'header' | 'text' | 'value';

export const MAX_TEMPLATE_BYTES = 8 * 1024;
export const MAX_BLOCK_DEPTH = 8;

const BLOCK_HELPERS = new Set(['if', 'unless', 'each', 'with']);
const DATA_VARIABLES = new Set(['index', 'key', 'first', 'last', 'root']);

/** One environment for the whole product, isolated from the global `Handlebars` others may touch. */
const env = Handlebars.create();
// `log` writes to the console and `lookup` takes computed names, defeating the compile-time checks.
env.unregisterHelper('log');
env.unregisterHelper('lookup');
for (const [name, spec] of Object.entries({ ...PUBLIC_HELPERS, ...ESCAPERS })) {
  env.registerHelper(name, toHandlebarsHelper(name, spec));
}

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

export interface CompiledTemplate {
  readonly source: string;
  readonly context: EscapeContext;
  /** Names used in `{{secret 'NAME'}}`. */
  readonly secretNames: readonly string[];
  render(data: object, state: RenderState): string;
  /** For the `value` context: the expression's raw value (number, object, ...), not its text. */
  evaluate(data: object, state: RenderState): unknown;
}

/** Parses with the size limit; syntax errors become a `TemplateProblem`. */
export function parseTemplate(source: string): Program {
  const bytes = Buffer.byteLength(source, 'utf8');
  if (bytes > MAX_TEMPLATE_BYTES) {
    throw new TemplateProblem(`template is ${bytes} bytes; the limit is ${MAX_TEMPLATE_BYTES}`);
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

export function compileTemplate(source: string, context: EscapeContext): CompiledTemplate {
  const program = parseTemplate(source);
  if (context === 'value' && !isSingleExpression(program)) {
    throw new TemplateProblem('a typed value must be exactly one {{expression}}');
  }
  const secretNames = new Set<string>();
  const transformed = rewriteProgram(
    program,
    { context, text: '', started: false, baseUrl: false, secretNames },
    0,
  );
  let template: HandlebarsTemplateDelegate;
  try {
    // `compile` is lazy; `precompile` runs the same compiler now, so errors surface at load time.
    env.precompile(transformed, compileOptions);
    template = env.compile(transformed, compileOptions);
  } catch (error) {
    throw new TemplateProblem(describeFailure(error), { cause: error });
  }
  const run = (data: object, state: RenderState): string => {
    try {
      return template(data, { ...runtimeOptions, data: { relay: state } });
    } catch (error) {
      if (error instanceof TemplateProblem) throw error;
      // No `cause`: the original message may quote a value (an email, a secret) that logs must not see.
      throw new TemplateProblem(describeFailure(error, state.revealed));
    }
  };
  return {
    source,
    context,
    secretNames: [...secretNames].sort(),
    render: run,
    evaluate(data, state) {
      state.captured = undefined;
      run(data, state);
      return state.captured;
    },
  };
}

/** Secret names a template uses, or none if it does not parse (compiling reports that). */
export function secretNamesIn(source: string): string[] {
  try {
    return compileTemplate(source, 'text').secretNames.slice();
  } catch {
    return [];
  }
}

interface Walk {
  readonly context: EscapeContext;
  /** Literal URL text seen so far, to tell the authority from the path. */
  text: string;
  /** Whether anything (text or expression) came before the current point. */
  started: boolean;
  /** The URL began with an expression giving a base URL, so everything after is path. */
  baseUrl: boolean;
  readonly secretNames: Set<string>;
}

function rewriteProgram(program: Program, walk: Walk, depth: number): Program {
  return { ...program, body: program.body.map((statement) => rewriteStatement(statement, walk, depth)) };
}

function rewriteStatement(statement: Statement, walk: Walk, depth: number): Statement {
  switch (statement.type) {
    case 'ContentStatement':
      walk.text += (statement as hbs.AST.ContentStatement).value;
      walk.started = true;
      return statement;
    case 'CommentStatement':
      return statement;
    case 'MustacheStatement':
      return rewriteMustache(statement as MustacheStatement, walk);
    case 'BlockStatement':
      return rewriteBlock(statement as BlockStatement, walk, depth + 1);
    default:
      throw new TemplateProblem(
        `${describeNode(statement)} are not supported; use helpers and {{#if}}/{{#each}}`,
      );
  }
}

function rewriteBlock(block: BlockStatement, walk: Walk, depth: number): BlockStatement {
  const path = block.path;
  if (path.type !== 'PathExpression' || !isSimpleName(path) || !BLOCK_HELPERS.has(path.parts[0]!)) {
    throw new TemplateProblem(
      `${at(block)}blocks are limited to {{#if}}, {{#unless}}, {{#each}} and {{#with}}`,
    );
  }
  if (depth > MAX_BLOCK_DEPTH) {
    throw new TemplateProblem(`${at(block)}blocks nest deeper than ${MAX_BLOCK_DEPTH}`);
  }
  if (block.params.length !== 1 || block.hash) {
    throw new TemplateProblem(`${at(block)}{{#${path.parts[0]}}} takes exactly one argument`);
  }
  block.params.forEach((param) => checkExpression(param, walk));
  walk.started = true;
  return {
    ...block,
    program: block.program && rewriteProgram(block.program, walk, depth),
    inverse: block.inverse && rewriteProgram(block.inverse, walk, depth),
  };
}

function rewriteMustache(mustache: MustacheStatement, walk: Walk): MustacheStatement {
  const { path, params, hash } = mustache;
  const helper = isPath(path) && isSimpleName(path) ? path.parts[0]! : undefined;
  const isCall =
    params.length > 0 ||
    hash !== undefined ||
    (helper !== undefined && Object.hasOwn(PUBLIC_HELPERS, helper));
  let inner: Expression;
  if (isCall) {
    if (!isPath(path)) throw new TemplateProblem(`${at(mustache)}a helper name must not be quoted`);
    const call: SubExpression = { type: 'SubExpression', path, params, hash, loc: mustache.loc };
    checkExpression(call, walk);
    // Already percent-encoded: encoding again would turn `%40` into `%2540`.
    if (walk.context === 'url' && helper === 'urlencode') {
      walk.started = true;
      return mustache;
    }
    inner = call;
  } else {
    checkExpression(path, walk);
    inner = path;
  }
  const escaper = escaperFor(walk);
  const escaperPath: PathExpression = {
    type: 'PathExpression',
    data: false,
    depth: 0,
    parts: [escaper],
    original: escaper,
    loc: mustache.loc,
  };
  const { hash: _hash, ...rest } = mustache;
  return { ...rest, path: escaperPath, params: [inner] } as MustacheStatement;
}

function escaperFor(walk: Walk): string {
  const first = !walk.started;
  walk.started = true;
  switch (walk.context) {
    case 'header':
      return '__header';
    case 'text':
      return '__text';
    case 'value':
      return '__capture';
    case 'url': {
      if (first) {
        walk.baseUrl = true;
        return '__urlBase';
      }
      const scheme = walk.text.indexOf('://');
      const inPath = walk.baseUrl || (scheme >= 0 && /[/?#]/.test(walk.text.slice(scheme + 3)));
      return inPath ? '__url' : '__urlAuthority';
    }
  }
}

function checkExpression(node: Expression, walk: Walk): void {
  switch (node.type) {
    case 'PathExpression':
      return checkPath(node as PathExpression);
    case 'SubExpression': {
      const call = node as SubExpression;
      const name = isSimpleName(call.path) ? call.path.parts[0]! : call.path.original;
      const spec = Object.hasOwn(PUBLIC_HELPERS, name) ? PUBLIC_HELPERS[name] : undefined;
      if (!spec) throw new TemplateProblem(`${at(call)}unknown helper "${name}"`);
      if (call.hash) throw new TemplateProblem(`${at(call)}${name} takes no name=value options`);
      if (call.params.length < spec.min || call.params.length > spec.max) {
        throw new TemplateProblem(`${at(call)}${name} takes ${arity(spec)}, got ${call.params.length}`);
      }
      if (name === 'secret') {
        const [param] = call.params;
        // A literal name keeps the set of secrets a connection can read fixed and reviewable.
        if (param?.type !== 'StringLiteral') {
          throw new TemplateProblem(`${at(call)}write secret names in quotes: {{secret 'NAME'}}`);
        }
        walk.secretNames.add((param as hbs.AST.StringLiteral).value);
      }
      call.params.forEach((param) => checkExpression(param, walk));
      return;
    }
    default:
      return; // literals
  }
}

/** Names that only exist on prototypes; Handlebars denies them too, but a clear compile error is kinder. */
function isPrototypeName(part: string): boolean {
  return part in Object.prototype || part === 'prototype';
}

function checkPath(path: PathExpression): void {
  if (path.data && !DATA_VARIABLES.has(path.parts[0] ?? '')) {
    throw new TemplateProblem(
      `${at(path)}@${path.parts[0]} is not available; use @index, @key, @first, @last or @root`,
    );
  }
  const denied = path.parts.find(isPrototypeName);
  if (denied !== undefined) throw new TemplateProblem(`${at(path)}"${denied}" cannot be used in a template`);
  // Strict mode only checks a mustache's own path; marking every lookup strict extends that to
  // helper arguments, so `{{md5 emial}}` fails instead of hashing nothing. Attributes vary per
  // unsubscribe, so a missing one is empty rather than an error.
  const optional = !path.data && path.depth === 0 && path.parts[0] === 'attributes' && path.parts.length > 1;
  (path as PathExpression & { strict?: boolean }).strict = !optional;
}

function isPath(node: hbs.AST.Node): node is PathExpression {
  return node.type === 'PathExpression';
}

function isSimpleName(path: PathExpression): boolean {
  return !path.data && path.depth === 0 && path.parts.length === 1 && path.original === path.parts[0];
}

function at(node: hbs.AST.Node): string {
  return node.loc ? `line ${node.loc.start.line}, column ${node.loc.start.column + 1}: ` : '';
}

function describeNode(node: Statement): string {
  const kind = node.type
    .replace(/Statement$|Block$/, '')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toLowerCase();
  return `${at(node)}${kind}s`;
}
