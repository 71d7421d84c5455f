import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { connectionSchema } from '../../src/config/connection-schema.js';
import { checkUnsubscribeBody } from '../../src/api/unsubscribe-body.js';
import { connectionJsonSchema } from '../../src/config/json-schema.js';
import { PUBLIC_HELPERS } from '../../src/templates/helpers.js';
import { BLOCK_HELPERS } from '../../src/templates/template-ast.js';

/**
 * docs/connections.md is where integration engineers learn the format, and the JSON Schema is what
 * their editor explains as they type: both must keep up with the zod schema and the helper registry.
 * Everything is read from the code, so a new field or helper fails here until it is documented.
 */

const root = path.resolve(import.meta.dirname, '../..');
const doc = readFileSync(path.join(root, 'docs/connections.md'), 'utf8');
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
const committedSchema = JSON.parse(
  readFileSync(path.join(root, 'schema/connection.schema.json'), 'utf8'),
) as JsonSchema;

interface JsonSchema {
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema | JsonSchema[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  definitions?: Record<string, JsonSchema>;
  enum?: unknown[];
  const?: unknown;
  description?: string;
}

interface Property {
  /** Where it is, e.g. `request.auth|4.tokenUrl` (`|n`: the n-th alternative, `[]`: list items). */
  where: string;
  name: string;
  schema: JsonSchema;
}

/** Every property at every depth, through alternatives, list items, maps and definitions. */
function propertiesOf(schema: JsonSchema, where = ''): Property[] {
  const found: Property[] = [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    const at = where === '' ? name : `${where}.${name}`;
    found.push({ where: at, name, schema: child }, ...propertiesOf(child, at));
  }
  for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
    (schema[key] ?? []).forEach((alternative, i) =>
      found.push(...propertiesOf(alternative, `${where}|${i}`)),
    );
  }
  const items = Array.isArray(schema.items) ? schema.items : schema.items ? [schema.items] : [];
  for (const item of items) found.push(...propertiesOf(item, `${where}[]`));
  if (typeof schema.additionalProperties === 'object') {
    found.push(...propertiesOf(schema.additionalProperties, `${where}{}`));
  }
  for (const [name, definition] of Object.entries(schema.definitions ?? {})) {
    found.push(...propertiesOf(definition, `#${name}`));
  }
  return found;
}

/** String values a field takes (`enum`, `const`): auth types, verdicts, methods, encodings, ... */
function valuesOf(schema: JsonSchema): string[] {
  const values: string[] = [];
  const visit = (node: unknown) => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (node !== null && typeof node === 'object') {
      const { enum: options, const: only } = node as JsonSchema;
      for (const value of [...(options ?? []), only]) if (typeof value === 'string') values.push(value);
      Object.values(node).forEach(visit);
    }
  };
  visit(schema);
  return [...new Set(values)];
}

/** Identifiers written as code in the doc: inline `code` and fenced blocks. */
function codeWords(markdown: string): Set<string> {
  const code = [...markdown.matchAll(/```[\s\S]*?```|`[^`\n]+`/g)].map((m) => m[0]).join('\n');
  return new Set(code.match(/[A-Za-z_$][\w$]*/g) ?? []);
}

const generated = connectionJsonSchema() as JsonSchema;

describe('docs/connections.md', () => {
  const words = codeWords(doc);

  it('mentions every field of the connection schema, at every depth, as code', () => {
    const properties = propertiesOf(generated);
    expect(properties.length).toBeGreaterThan(100);
    const missing = properties.filter(({ name }) => !words.has(name)).map(({ where }) => where);
    expect(missing).toEqual([]);
  });

  it('mentions every auth type, body kind, verdict and other value a field takes, as code', () => {
    const values = valuesOf(generated).filter((value) => /^[A-Za-z_$][\w$]*$/.test(value));
    for (const expected of ['oauth2_client_credentials', 'hmac', 'refresh_auth', 'standard_webhooks'])
      expect(values).toContain(expected);
    const bodyKinds = Object.keys(generated.properties!.request!.properties!.body!.properties!);
    expect(bodyKinds).toEqual(expect.arrayContaining(['json', 'form', 'xml', 'text']));
    const missing = [...values, ...bodyKinds].filter((value) => !words.has(value));
    expect(missing).toEqual([]);
  });

  it('gives every helper a template may call a row of its own in the helper table', () => {
    const helpers = [...Object.keys(PUBLIC_HELPERS), ...[...BLOCK_HELPERS].map((name) => `#${name}`)];
    expect(helpers).toEqual(
      expect.arrayContaining(['setting', 'date', 'now', 'uuid', 'split', 'after', 'xml']),
    );
    // A row starts with the helper's call: | `date value [format]` | ...
    const missing = helpers.filter(
      (name) => !new RegExp(`^\\|\\s*\`${name.replace('#', '\\{\\{#')}\\b`, 'm').test(doc),
    );
    expect(missing).toEqual([]);
  });

  it('documents {{auth.accessToken}}', () => {
    expect(doc).toContain('{{auth.accessToken}}');
  });
});

describe('schema/connection.schema.json', () => {
  it('gives only examples that its field accepts, written as a file holds them', () => {
    const checked: { path: string; example: unknown; problem?: string }[] = [];
    z.toJSONSchema(connectionSchema, {
      io: 'input',
      unrepresentable: 'any',
      override: ({ zodSchema, path: at }) => {
        const examples = z.globalRegistry.get(zodSchema)?.examples;
        if (!Array.isArray(examples)) return;
        for (const example of examples) {
          const result = z.safeParse(zodSchema, example);
          checked.push({ path: at.join('.'), example, problem: result.error?.issues[0]?.message });
        }
      },
    });
    expect(checked.length).toBeGreaterThan(80);
    expect(checked.filter(({ problem }) => problem !== undefined)).toEqual([]);
    // Durations transform (`5s` becomes 5000), and zod leaves their examples out unless kept.
    const deadline = committedSchema.properties!.retry!.properties!.deadline as JsonSchema & {
      examples?: unknown;
    };
    expect(deadline.examples).toEqual(['10d']);
  });

  it('describes every property at every depth, so editors explain the format as it is typed', () => {
    const undescribed = propertiesOf(committedSchema)
      .filter(({ schema }) => typeof schema.description !== 'string' || schema.description.trim() === '')
      .map(({ where }) => where);
    expect(undescribed).toEqual([]);
  });
});

describe("README.md's ingest API", () => {
  it('says which addresses are refused, quoted local parts among them, and each example is judged as it says', () => {
    // Rows of its `email` table: | `"john doe"@example.com` | refused: quoted local part |
    const rows = [...readme.matchAll(/^\|\s*`([^`]+)`\s*\|\s*(accepted|refused)\b/gm)].map(
      ([, email, said]) => ({
        email: email!,
        said: said!,
      }),
    );
    expect(rows.map(({ email }) => email)).toContain('"john doe"@example.com');
    expect(rows.filter(({ said }) => said === 'accepted').length).toBeGreaterThan(2);
    const judged = rows.map(({ email }) => ({
      email,
      said: checkUnsubscribeBody({ email }).ok ? 'accepted' : 'refused',
    }));
    expect(judged).toEqual(rows);
  });
});
