import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Connection } from '../../src/config/connection-schema.js';
import { parseConnectionFile } from '../../src/config/load-connections.js';
import type { SendOutcome } from '../../src/domain/delivery.js';
import { ruleValueResolver } from '../../src/queue/rule-values.js';
import { classify } from '../../src/rules/classify.js';
import { parseJsonBody, selectJson } from '../../src/rules/json-match.js';
import { compileRuleRegex } from '../../src/rules/rule-regex.js';
import { sampleContext, type TemplateContext } from '../../src/templates/context.js';
import { compileConnection, renderRequest } from '../../src/templates/render-request.js';

/**
 * Whatever `validate` accepts must work at delivery: it renders for any unsubscribe without
 * throwing, and its rules classify any answer without throwing, every JSONPath and regex of them
 * evaluated (compiled), never skipped as "no match".
 */

const NOW = Date.parse('2026-11-23T12:00:00Z');
const secrets = { get: (name: string) => `secret-${name}` };

// Templates: text, variables, helpers and blocks nested up to three deep, with `this`, `../` and `@` paths.
const variable = fc.constantFrom(
  'email',
  'campaign',
  'source',
  'id',
  'attempt',
  'attributes.plan',
  'settings.list',
  'this',
  '../email',
  '../this',
  '@key',
  '@index',
  '@root.email',
  'emial',
  'length',
);
const collection = fc.constantFrom(
  'attributes',
  'settings',
  'this',
  '../attributes',
  '@root.attributes',
  'campaign',
  'email',
);
const helperCall = fc.constantFrom(
  '{{lowercase email}}',
  "{{default campaign 'none'}}",
  "{{default source 'api'}}",
  '{{sha256 email}}',
  '{{urlencode this}}',
  '{{json this}}',
  "{{date occurredAt 'epoch'}}",
  "{{split email '@' 1}}",
);
const block = fc.constantFrom('each', 'each', 'with', 'if', 'unless');
const scoped = fc.constantFrom(
  'this',
  '@key',
  '@index',
  '../email',
  '@root.email',
  '{{lowercase this}}',
  'email',
);
/** One block, or a block inside a block: `{{#each attributes}}{{#each this}}{{this}}{{/each}}{{/each}}`. */
const nested = fc
  .tuple(block, collection, fc.option(fc.tuple(block, collection), { nil: undefined }), scoped)
  .map(([outer, over, inner, value]) => {
    const leaf = value.startsWith('{{') ? value : `{{${value}}}`;
    const body = inner ? `{{#${inner[0]} ${inner[1]}}}${leaf}{{/${inner[0]}}}` : leaf;
    return `{{#${outer} ${over}}}${body}{{/${outer}}}`;
  });
const template = fc.letrec<{ part: string; parts: string }>((tie) => ({
  part: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.stringMatching(/^[a-z :/-]{0,6}$/),
    variable.map((v) => `{{${v}}}`),
    helperCall,
    nested,
    fc
      .tuple(block, collection, tie('parts'))
      .map(([name, over, inner]) => `{{#${name} ${over}}}${inner}{{/${name}}}`),
  ),
  parts: fc.array(tie('part'), { minLength: 1, maxLength: 3 }).map((parts) => parts.join('')),
})).parts;

// JSONPaths and regexes: well-formed ones, and pieces mixed with characters that break them.
const pathPiece = fc.constantFrom(
  '.errors',
  '.code',
  '[*]',
  '..email',
  '.*',
  '[0]',
  '[-1]',
  '[0:2]',
  "[?(@.code == 'X')]",
  '[?(@.n > 1 && !@.ok)]',
  "['a b']",
);
const brokenPiece = fc.constantFrom('[', ']', '(', '?', '@', "'", '.', '==', '[?(@.x ==)]', '..[');
const jsonPath = fc.oneof(
  fc.array(pathPiece, { maxLength: 4 }).map((parts) => `$${parts.join('')}`),
  fc
    .array(fc.oneof(pathPiece, brokenPiece), { minLength: 1, maxLength: 4 })
    .map((parts) => `$${parts.join('')}`),
);
const regexPiece = fc.constantFrom('a', '(a+)+', '|', '[a-z]', '^', '$', '.', '\\d{2}', 'x?', '!');
const regex = fc.oneof(
  fc.array(regexPiece, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('')),
  fc
    .array(fc.oneof(regexPiece, fc.constantFrom('(', ')', '\\1', '(?=x)', '[', '{2', '*')), {
      minLength: 1,
      maxLength: 4,
    })
    .map((parts) => parts.join('')),
);
const when = fc.oneof(
  fc.record({ json: fc.record({ path: jsonPath, exists: fc.boolean() }) }),
  fc.record({ json: fc.record({ path: jsonPath, contains: fc.constantFrom('{{email}}', 'X') }) }),
  fc.record({ status: fc.constantFrom(200, '4xx'), bodyMatches: regex }),
  fc.record({ header: fc.record({ name: fc.constant('X-Status'), matches: regex }) }),
);
const rules = fc.array(
  fc.record({ when, then: fc.constantFrom('success', 'fail', 'retry', 'success_already_done') }),
  { maxLength: 3 },
);

const header = fc.constantFrom('static', '{{sha256 email}}', "{{default campaign 'none'}}", '{{attempt}}');
const query = fc.constantFrom('{{email}}', '{{settings.list}}', "{{default source 'x'}}");
const connectionFile = fc
  .record({ body: template, header, query, rules })
  .map(({ body, header: traced, query: q, rules: list }) =>
    stringify({
      id: 'prop',
      account: 'acme',
      name: 'Property',
      settings: { list: 'l1' },
      request: {
        url: `https://crm.example.com/unsubscribe?q=${q}`,
        headers: { 'X-Trace': traced },
        body: { json: { email: '{{email}}', value: body } },
      },
      response: { rules: list },
    }),
  );

// Unsubscribes as ingest accepts them: optional fields present or not, any number of attributes.
const unsubscribe = fc.record({
  email: fc.constantFrom('jane@example.com', 'o.brien+news@example.co.uk', 'X@EXAMPLE.COM'),
  campaign: fc.option(fc.constantFrom('spring-sale', 'c1'), { nil: null }),
  source: fc.option(fc.constantFrom('footer-link', 'list-unsubscribe'), { nil: null }),
  occurredAt: fc.option(fc.constant('2026-11-20T10:00:00.000Z'), { nil: null }),
  attributes: fc.dictionary(fc.stringMatching(/^[a-z]{1,6}$/), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
});

const answer = fc.record({
  status: fc.constantFrom(200, 201, 400, 404, 429, 500),
  body: fc.oneof(
    fc.json(),
    fc.constant('{"errors":[{"code":"X","email":"jane@example.com","n":2}],"code":"X"}'),
    fc.constant(`${'a'.repeat(2_000)}!`),
    fc.string({ maxLength: 20 }),
  ),
  status_header: fc.option(fc.stringMatching(/^[a-z!]{0,30}$/), { nil: undefined }),
});

function contextFor(
  connection: Connection,
  input: typeof unsubscribe extends fc.Arbitrary<infer T> ? T : never,
): TemplateContext {
  return { ...sampleContext(connection), ...input, attributes: { ...input.attributes } };
}

function regexesOf(connection: Connection): string[] {
  return connection.response.rules.flatMap((rule) =>
    [rule.when?.bodyMatches, rule.when?.header?.matches].filter((r): r is string => r !== undefined),
  );
}

function pathsOf(connection: Connection): string[] {
  return connection.response.rules.flatMap((rule) => {
    const json = rule.when?.json;
    return json === undefined ? [] : (Array.isArray(json) ? json : [json]).map((test) => test.path);
  });
}

describe('whatever passes validation renders and classifies', () => {
  it(
    'never throws at render or classification, and evaluates every rule it accepted',
    { timeout: 120_000 },
    () => {
      fc.assert(
        fc.property(
          connectionFile,
          fc.array(unsubscribe, { minLength: 1, maxLength: 3 }),
          fc.array(answer, { minLength: 1, maxLength: 3 }),
          (text, unsubscribes, answers) => {
            const { connection, issues } = parseConnectionFile(text, 'prop.yaml');
            if (!connection) {
              // Refused: each problem names its field and says why.
              expect(issues.length).toBeGreaterThan(0);
              for (const issue of issues) expect(issue.reason).not.toBe('');
              return;
            }
            const compiled = compileConnection(connection);
            for (const input of unsubscribes) {
              const context = contextFor(connection, input);
              const request = renderRequest(compiled, context, secrets);
              expect(() => JSON.parse(request.body!) as unknown).not.toThrow();
              for (const { status, body, status_header } of answers) {
                const outcome: SendOutcome = {
                  kind: 'response',
                  status,
                  headers: status_header === undefined ? {} : { 'x-status': status_header },
                  body,
                  bodyTruncated: false,
                  durationMs: 1,
                };
                expect(() =>
                  classify(connection.response.rules, outcome, NOW, ruleValueResolver(context)),
                ).not.toThrow();
              }
            }
            // Evaluated against each answer, not skipped: a path that fails to compile answers undefined.
            for (const { body } of answers) {
              const document = parseJsonBody(body);
              if (!document.isJson) continue;
              for (const path of pathsOf(connection))
                expect(selectJson(path, document.value), path).toBeDefined();
            }
            for (const pattern of regexesOf(connection))
              expect(() => compileRuleRegex(pattern)).not.toThrow();
          },
        ),
        { numRuns: 200 },
      );
    },
  );
});
