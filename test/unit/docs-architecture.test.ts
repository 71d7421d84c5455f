import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * docs/architecture.md is the map a newcomer reads first: it must list every directory under src/
 * and every store module, link only to what the repository holds, and state the import rules the
 * code actually keeps (checked here from the code's own imports).
 */

const root = path.resolve(import.meta.dirname, '../..');
const src = path.join(root, 'src');
const doc = readFileSync(path.join(root, 'docs/architecture.md'), 'utf8');

const row = (name: string) => new RegExp(`^\\|\\s*\`${name.replace('.', '\\.')}\``, 'm');

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full) : entry.name.endsWith('.ts') ? [full] : [];
  });
}

interface Import {
  from: string;
  /** A path under src/ for the project's modules, else the package name. */
  to: string;
  typeOnly: boolean;
}

function importsOf(file: string): Import[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
  const found: Import[] = [];
  for (const statement of source.statements) {
    if (!ts.isImportDeclaration(statement) && !ts.isExportDeclaration(statement)) continue;
    const specifier = statement.moduleSpecifier;
    if (!specifier || !ts.isStringLiteral(specifier)) continue;
    let typeOnly: boolean;
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause;
      const bindings = clause?.namedBindings;
      typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (!clause.name &&
            bindings !== undefined &&
            ts.isNamedImports(bindings) &&
            bindings.elements.every((element) => element.isTypeOnly)));
    } else typeOnly = statement.isTypeOnly;
    const to = specifier.text.startsWith('.')
      ? path.relative(src, path.resolve(path.dirname(file), specifier.text)).replace(/\.js$/, '.ts')
      : specifier.text;
    found.push({ from: path.relative(src, file), to, typeOnly });
  }
  return found;
}

const imports = filesUnder(src).flatMap(importsOf);
const runtime = new Map<string, string[]>();
for (const { from, to, typeOnly } of imports) {
  if (!typeOnly) runtime.set(from, [...(runtime.get(from) ?? []), to]);
}

/** Everything `start` loads at run time, itself included. */
function closure(start: string): Set<string> {
  const seen = new Set<string>([start]);
  const todo = [start];
  while (todo.length > 0) {
    for (const next of runtime.get(todo.pop()!) ?? []) {
      if (!seen.has(next)) {
        seen.add(next);
        todo.push(next);
      }
    }
  }
  return seen;
}

describe('docs/architecture.md', () => {
  it('has a row for every directory under src/ and every file beside them, and names the nested ones', () => {
    const entries = readdirSync(src, { withFileTypes: true });
    const top = entries.map((entry) => (entry.isDirectory() ? `${entry.name}/` : entry.name));
    expect(top).toEqual(expect.arrayContaining(['auth/', 'domain/', 'testing/', 'store/']));
    expect(top.filter((name) => !row(name).test(doc))).toEqual([]);
    const nested = entries
      .filter((entry) => entry.isDirectory())
      .flatMap((entry) =>
        readdirSync(path.join(src, entry.name), { withFileTypes: true })
          .filter((child) => child.isDirectory())
          .map((child) => `${entry.name}/${child.name}/`),
      );
    expect(nested.filter((name) => !doc.includes(`\`${name}\``))).toEqual([]);
  });

  it('gives every store module a row saying its one job', () => {
    const modules = readdirSync(path.join(src, 'store')).filter((name) => name.endsWith('.ts'));
    expect(modules.length).toBeGreaterThan(10);
    expect(modules.filter((name) => !row(name).test(doc))).toEqual([]);
  });

  it('links only to files the repository holds', () => {
    const targets = [...doc.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)]
      .map(([, target]) => target!)
      .filter((target) => !/^[a-z]+:/.test(target));
    const docs = path.join(root, 'docs');
    const broken = targets.filter((target) => {
      const resolved = path.resolve(docs, target);
      return !resolved.startsWith(`${root}${path.sep}`) || !existsSync(resolved);
    });
    expect(broken).toEqual([]);
  });
});

describe('the import rules docs/architecture.md states', () => {
  it('domain/ imports nothing of the project outside itself', () => {
    const outside = imports.filter(
      ({ from, to }) => from.startsWith('domain/') && to.endsWith('.ts') && !to.startsWith('domain/'),
    );
    expect(outside).toEqual([]);
  });

  it('no module reaches itself through a chain of run-time imports', () => {
    const cycles = [...runtime.keys()].filter((module) =>
      (runtime.get(module) ?? []).some((next) => next !== module && closure(next).has(module)),
    );
    expect(cycles).toEqual([]);
  });

  it('templates/ and rules/ load nothing that opens a socket or talks to Redis', () => {
    const forbidden = (module: string) =>
      /^(store|queue|api|events|observe|cli|testing)\//.test(module) ||
      [
        'http/sender.ts',
        'http/target-guard.ts',
        'auth/oauth2.ts',
        'engine.ts',
        'redis-bootstrap.ts',
      ].includes(module) ||
      /^(ioredis|bullmq|undici|fastify|node:(net|http|https|dns|tls))$/.test(module);
    const pure = [...runtime.keys()].filter((module) => /^(templates|rules)\//.test(module));
    expect(pure.length).toBeGreaterThan(10);
    const reached = pure.flatMap((module) =>
      [...closure(module)].filter(forbidden).map((bad) => `${module} -> ${bad}`),
    );
    expect(reached).toEqual([]);
  });
});
