import { PUBLIC_HELPERS, arity } from './helpers.js';
import { didYouMean } from './suggest.js';
import { TemplateProblem } from './problem.js';
import { isTimeFormat, unknownFormat } from './time.js';

type Program = hbs.AST.Program;
type Statement = hbs.AST.Statement;
type Expression = hbs.AST.Expression;
type PathExpression = hbs.AST.PathExpression;
type SubExpression = hbs.AST.SubExpression;
type MustacheStatement = hbs.AST.MustacheStatement;
type BlockStatement = hbs.AST.BlockStatement;

/** Where a template's output lands; decides how every `{{...}}` is escaped. */
export type EscapeContext = 'url' | 'header' | 'text' | 'value' | 'plain' | 'xml';

export const MAX_BLOCK_DEPTH = 8;
export const BLOCK_HELPERS = new Set(['if', 'unless', 'each', 'with']);
const SCOPE_BLOCKS = new Set(['each', 'with']);
const DATA_VARIABLES = new Set(['index', 'key', 'first', 'last', 'root']);

/** What a template may refer to beyond the fixed context, known when its connection is compiled. */
export interface TemplateOptions {
  /** Names `{{setting 'NAME'}}` may use; any other is a compile error. Checked at render when absent. */
  readonly settings?: readonly string[];
  /** `{{auth.accessToken}}` exists: the delivery request of an OAuth2 connection. */
  readonly accessToken?: boolean;
  /** Size limit in UTF-8 bytes; XML and text bodies get more room than single fields. */
  readonly maxBytes?: number;
  /**
   * Every render through Handlebars, even of plain `{{name.path}}` templates that render without it:
   * the reference tests hold the direct path to (test/unit/templates-direct.test.ts).
   */
  readonly viaHandlebars?: boolean;
}

export interface Walk {
  readonly context: EscapeContext;
  readonly options: TemplateOptions;
  /** Literal URL text seen so far, to tell the authority from the path. */
  text: string;
  /** Whether anything (text or expression) came before the current point. */
  started: boolean;
  /** The URL began with an expression giving a base URL, so everything after is path. */
  baseUrl: boolean;
  /** `{{#each}}`/`{{#with}}` blocks around the current point, which change what a bare name means. */
  scoped: number;
  readonly secretNames: Set<string>;
}

/** Checks a parsed template and wraps every `{{...}}` in the escaper for its context. */
export function rewriteProgram(program: Program, walk: Walk, depth: number): Program {
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
  const scopes = SCOPE_BLOCKS.has(path.parts[0]!) ? 1 : 0;
  walk.scoped += scopes;
  const program = block.program && rewriteProgram(block.program, walk, depth);
  walk.scoped -= scopes;
  // `{{else}}` of each/with runs in the outer scope.
  const inverse = block.inverse && rewriteProgram(block.inverse, walk, depth);
  return { ...block, program, inverse };
}

/** Helpers whose output is already escaped for a context, so wrapping them again would double-encode. */
const ALREADY_ESCAPED: Partial<Record<EscapeContext, string>> = { url: 'urlencode', xml: 'xml' };

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
    // Already encoded: encoding again would turn `%40` into `%2540`, `&amp;` into `&amp;amp;`.
    if (helper !== undefined && ALREADY_ESCAPED[walk.context] === helper) {
      walk.started = true;
      return mustache;
    }
    inner = call;
  } else {
    checkExpression(path, walk);
    inner = path;
  }
  const escaper = escaperFor(walk);
  const { hash: _hash, ...rest } = mustache;
  return { ...rest, path: pathTo(escaper, mustache.loc), params: [inner] } as MustacheStatement;
}

function escaperFor(walk: Walk): string {
  const first = !walk.started;
  walk.started = true;
  switch (walk.context) {
    case 'header':
      return '__header';
    case 'text':
      return '__text';
    case 'plain':
      return '__plain';
    case 'xml':
      return '__xml';
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

function checkExpression(node: Expression, walk: Walk, parent?: string): void {
  switch (node.type) {
    case 'PathExpression':
      return checkPath(node as PathExpression, walk);
    case 'SubExpression': {
      const call = node as SubExpression;
      const name = isSimpleName(call.path) ? call.path.parts[0]! : call.path.original;
      const spec = Object.hasOwn(PUBLIC_HELPERS, name) ? PUBLIC_HELPERS[name] : undefined;
      if (!spec)
        throw new TemplateProblem(`${at(call)}unknown helper "${name}"${didYouMean(name, helperNames())}`);
      if (call.hash) throw new TemplateProblem(`${at(call)}${name} takes no name=value options`);
      if (call.params.length < spec.min || call.params.length > spec.max) {
        throw new TemplateProblem(`${at(call)}${name} takes ${arity(spec)}, got ${call.params.length}`);
      }
      checkCall(call, name, walk, parent);
      call.params.forEach((param) => checkExpression(param, walk, name));
      return;
    }
    default:
      return; // literals
  }
}

/** Helpers a template may call, for "did you mean" (`__` escapers are internal). */
function helperNames(): string[] {
  return [...Object.keys(PUBLIC_HELPERS), ...BLOCK_HELPERS].filter((name) => !name.startsWith('__'));
}

/** Per-helper checks on literal arguments, so mistakes show at `validate` rather than at delivery. */
function checkCall(call: SubExpression, name: string, walk: Walk, parent: string | undefined): void {
  const [first, second, third] = call.params;
  switch (name) {
    case 'secret':
      // A literal name keeps the set of secrets a connection can read fixed and reviewable.
      walk.secretNames.add(literalText(call, first, "write secret names in quotes: {{secret 'NAME'}}"));
      return;
    case 'setting': {
      const setting = literalText(call, first, "write setting names in quotes: {{setting 'NAME'}}");
      const known = walk.options.settings;
      if (known && !known.includes(setting)) {
        const have = known.length > 0 ? `its settings are ${known.join(', ')}` : 'it has no settings';
        throw new TemplateProblem(
          `${at(call)}unknown setting "${setting}"; ${have}${didYouMean(setting, known)}`,
        );
      }
      return;
    }
    case 'now':
      if (first) checkFormat(call, first);
      return;
    case 'date': {
      if (second) checkFormat(call, second);
      // Becomes `__date value format name lenient`: the name for errors, lenient inside `default`.
      const label = first?.type === 'PathExpression' ? (first as PathExpression).original : 'the value';
      call.path = pathTo('__date', call.loc);
      call.params = [
        first!,
        second ?? literal('StringLiteral', 'iso', call.loc),
        literal('StringLiteral', label, call.loc),
        literal('BooleanLiteral', parent === 'default', call.loc),
      ];
      return;
    }
    case 'split':
      if (third?.type === 'NumberLiteral' && !Number.isInteger((third as hbs.AST.NumberLiteral).value)) {
        throw new TemplateProblem(`${at(call)}split: the index must be a whole number`);
      }
      return;
  }
}

function literalText(call: SubExpression, param: Expression | undefined, hint: string): string {
  if (param?.type !== 'StringLiteral') throw new TemplateProblem(`${at(call)}${hint}`);
  return (param as hbs.AST.StringLiteral).value;
}

function checkFormat(call: SubExpression, param: Expression): void {
  const format = literalText(call, param, "write the format in quotes, e.g. {{now 'epoch'}}");
  if (!isTimeFormat(format)) throw new TemplateProblem(`${at(call)}${unknownFormat(format)}`);
}

/** Names that only exist on prototypes; Handlebars denies them too, but a clear compile error is kinder. */
function isPrototypeName(part: string): boolean {
  return part in Object.prototype || part === 'prototype';
}

function checkPath(path: PathExpression, walk: Walk): void {
  if (path.data && !DATA_VARIABLES.has(path.parts[0] ?? '')) {
    throw new TemplateProblem(
      `${at(path)}@${path.parts[0]} is not available; use @index, @key, @first, @last or @root`,
    );
  }
  const denied = path.parts.find(isPrototypeName);
  if (denied !== undefined) throw new TemplateProblem(`${at(path)}"${denied}" cannot be used in a template`);
  const top = path.data ? (path.parts[0] === 'root' ? path.parts[1] : undefined) : path.parts[0];
  const atTop = path.data || (path.depth === 0 && walk.scoped === 0);
  if (top === 'auth' && atTop && !walk.options.accessToken) {
    throw new TemplateProblem(
      `${at(path)}auth.accessToken is only available in the request of an oauth2_client_credentials connection`,
    );
  }
  // Strict mode only checks a mustache's own path; marking every lookup strict extends that to
  // helper arguments, so `{{md5 emial}}` fails instead of hashing nothing. Attributes vary per
  // unsubscribe, so a missing one is empty rather than an error.
  const optional = !path.data && path.depth === 0 && path.parts[0] === 'attributes' && path.parts.length > 1;
  (path as PathExpression & { strict?: boolean }).strict = !optional;
}

function pathTo(name: string, loc: hbs.AST.SourceLocation): PathExpression {
  return { type: 'PathExpression', data: false, depth: 0, parts: [name], original: name, loc };
}

function literal(
  type: 'StringLiteral' | 'BooleanLiteral',
  value: string | boolean,
  loc: hbs.AST.SourceLocation,
): Expression {
  return { type, value, original: value, loc } as Expression;
}

function isPath(node: hbs.AST.Node): node is PathExpression {
  return node.type === 'PathExpression';
}

export function isSimpleName(path: PathExpression): boolean {
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
