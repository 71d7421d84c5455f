import { describe, expect, it } from 'vitest';
import { ruleSchema, type Rule } from '../../src/config/connection-schema.js';
import type { SendOutcome } from '../../src/domain/delivery.js';
import { parseConnectionFile } from '../../src/config/load-connections.js';
import { classify } from '../../src/rules/classify.js';
import { compileJsonPath, jsonPathProblem } from '../../src/rules/json-path.js';
import { REGEX_INPUT_CHARS, regexMatches, ruleRegexProblem } from '../../src/rules/rule-regex.js';

const NOW = Date.parse('2026-11-23T12:00:00Z');
const response = (status: number, body: string, headers: Record<string, string> = {}): SendOutcome => ({
  kind: 'response',
  status,
  headers,
  body,
  bodyTruncated: false,
  durationMs: 5,
});

/** A connection file whose first rule's `when` is the given YAML flow mapping (on line 9). */
const fileWith = (when: string) => `id: acme
account: acme
name: Acme
request:
  url: https://crm.example.com/unsubscribe
  body: { json: { email: "{{email}}" } }
response:
  rules:
    - { when: ${when}, then: fail }
`;

describe('rules are compiled at validation: a bad one is refused with file, line, field and reason', () => {
  it.each([
    ["{ status: 200, json: { path: '$.errors[?(@.code == ', exists: true } }", 'when.json.path', /JSONPath/],
    ["{ status: 200, json: { path: '$.errors[', exists: true } }", 'when.json.path', /JSONPath/],
    ["{ status: 200, json: { path: 'errors', exists: true } }", 'when.json.path', /starts with \$/],
    [
      "{ status: 200, json: [{ path: '$.ok', exists: true }, { path: '$..[', exists: true }] }",
      'when.json[1].path',
      /JSONPath/,
    ],
    ["{ bodyMatches: '(error' }", 'when.bodyMatches', /missing closing \)/],
    ["{ header: { name: X-Status, matches: '[a-' } }", 'when.header.matches', /regular expression/],
  ])('%s', (when, field, reason) => {
    const { connection, issues } = parseConnectionFile(fileWith(when), 'connections/acme.yaml');
    expect(connection).toBeUndefined();
    expect(issues).toEqual([
      {
        file: 'connections/acme.yaml',
        line: 9,
        field: `response.rules[0].${field}`,
        reason: expect.stringMatching(reason),
      },
    ]);
  });

  it('a "200 carrying an error" rule with a filter is evaluated, not silently skipped', () => {
    const { connection, issues } = parseConnectionFile(
      fileWith('{ status: 200, json: { path: "$.errors[?(@.code == \'INVALID\')]", exists: true } }'),
      'acme.yaml',
    );
    expect(issues).toEqual([]);
    const verdict = classify(
      connection!.response.rules,
      response(200, '{"errors":[{"code":"INVALID"}]}'),
      NOW,
    );
    expect(verdict).toMatchObject({ verdict: 'fail', rule: 0 });
  });

  const docs = {
    errors: [
      { code: 'X', email: 'a' },
      { code: 'Y', email: 'b' },
    ],
    tags: ['v', 'n'],
  };

  it('compiles the JSONPath forms the docs show', () => {
    const doc = docs;
    const select = (path: string) => compileJsonPath(path)(doc);
    expect(select('$.errors[*].email')).toEqual(['a', 'b']);
    expect(select("$.errors[?(@.code == 'Y')].email")).toEqual(['b']);
    expect(select("$.errors[?@.code == 'Y'].email")).toEqual(['b']);
    expect(select('$..email')).toEqual(['a', 'b']);
    expect(select('$.errors..*')).toEqual([doc.errors[0], doc.errors[1], 'X', 'a', 'Y', 'b']);
    expect(select("$['tags'][-1]")).toEqual(['n']);
    expect(select('$.tags[::-1]')).toEqual(['n', 'v']);
    expect(select('$.errors[0,1].code')).toEqual(['X', 'Y']);
    expect(select('$.errors.1.email')).toEqual(['b']);
    expect(select('$.errors[?(@.code != "X" && !@.missing)].code')).toEqual(['Y']);
  });

  it('refuses filters that would call unknown functions, assign or carry a JavaScript regex', () => {
    for (const path of ['$[?(foo())]', '$[?(@.a = 1)]', '$[?(@.m.match(/(a+)+$/))]', '$[?(@.x === 1)]'])
      expect(jsonPathProblem(path), path).toMatch(/not a valid JSONPath/);
    // RFC 9535: `$` inside a filter is the whole answer, data rather than code.
    expect(compileJsonPath("$.errors[?$.tags[0] == 'v'].code")(docs)).toEqual(['X', 'Y']);
  });

  it('reads $.errors.0.email as $.errors[0].email, outside quotes and decimals', () => {
    expect(compileJsonPath('$.errors.0.email')(docs)).toEqual(['a']);
    expect(compileJsonPath('$..1')(docs)).toEqual([docs.errors[1], 'n']);
    expect(compileJsonPath("$['tags.0'].0")({ 'tags.0': ['q'] })).toEqual(['q']);
    expect(compileJsonPath('$[?@.n == 1.5].n')([{ n: 1.5 }, { n: 1 }])).toEqual([1.5]);
    // The character named is the one of the path as written, not of its rewritten form.
    expect(jsonPathProblem('$.errors.0.email[')).toMatch(/at character 18$/);
  });
});

describe('match() and search() in filters run on RE2, their pattern checked at validation', () => {
  const answer = { errors: [{ code: 'INVALID_EMAIL' }, { code: 'DUPLICATE' }] };
  it('match() matches the whole string, search() anywhere', () => {
    expect(compileJsonPath("$.errors[?match(@.code, 'INVALID')].code")(answer)).toEqual([]);
    expect(compileJsonPath("$.errors[?match(@.code, 'INVALID.*')].code")(answer)).toEqual(['INVALID_EMAIL']);
    expect(compileJsonPath("$.errors[?search(@.code, 'VALID')].code")(answer)).toEqual(['INVALID_EMAIL']);
    expect(compileJsonPath("$.errors[?search(@.code, '(?i)dup')].code")(answer)).toEqual(['DUPLICATE']);
  });

  it('matches (a+)+$ against a long "aaaa…!" value in linear time', () => {
    // Exponential for JavaScript's backtracking RegExp: this test hangs without RE2.
    const hostile = [{ m: `${'a'.repeat(50_000)}!` }, { m: 'aaa' }];
    expect(compileJsonPath("$[?match(@.m, '(a+)+')].m")(hostile)).toEqual(['aaa']);
    expect(compileJsonPath("$[?search(@.m, '^(a+)+$')].m")(hostile)).toEqual(['aaa']);
  });

  it.each([
    ["$[?match(@.m, '(a)\\\\1')]", /match\(\): .*backreferences are not supported.* at character 16$/],
    ["$[?search(@.m, 'x(?=y)')]", /search\(\): .*lookahead and lookbehind are not supported/],
    ["$[?match(@.m, '[a-')]", /RE2 syntax.*missing closing \]/],
    ['$[?search(@.m, @.pattern)]', /the pattern of search\(\) must be a 'string' at character 16$/],
  ])('refuses %s', (path, reason) => {
    expect(jsonPathProblem(path)).toMatch(/^not a valid JSONPath: /);
    expect(jsonPathProblem(path)).toMatch(reason);
  });
});

describe('rule regular expressions run on RE2: linear time, bounded input', () => {
  it('refuses what RE2 cannot match in linear time, saying why', () => {
    expect(ruleRegexProblem('(a)\\1')).toMatch(/backreferences are not supported/);
    expect(ruleRegexProblem('foo(?=bar)')).toMatch(/lookahead and lookbehind are not supported/);
    expect(ruleRegexProblem('(?<!x)y')).toMatch(/lookahead and lookbehind are not supported/);
    const rule = ruleSchema.safeParse({ when: { bodyMatches: '(a)\\1' }, then: 'fail' });
    expect(rule.success).toBe(false);
  });

  it('matches ^(a+)+$ against a long "aaaa…!" answer, with the right verdict', () => {
    const rules: Rule[] = [ruleSchema.parse({ when: { status: 200, bodyMatches: '^(a+)+$' }, then: 'fail' })];
    // Exponential for a backtracking engine (4.9 s at 28 bytes): this test hangs without RE2.
    const hostile = `${'a'.repeat(50_000)}!`;
    expect(classify(rules, response(200, hostile), NOW)).toMatchObject({
      verdict: 'success',
      rule: 'default',
    });
    expect(classify(rules, response(200, 'a'.repeat(50_000)), NOW)).toMatchObject({
      verdict: 'fail',
      rule: 0,
    });
    const header: Rule[] = [
      ruleSchema.parse({ when: { header: { name: 'X-Status', matches: '^(a+)+$' } }, then: 'retry' }),
    ];
    expect(classify(header, response(200, '', { 'x-status': `${'a'.repeat(30)}!` }), NOW).verdict).toBe(
      'success',
    );
  });

  it('looks at no more than the first REGEX_INPUT_CHARS characters', () => {
    const tail = `${'x'.repeat(REGEX_INPUT_CHARS)}needle`;
    expect(regexMatches('needle', tail)).toBe(false);
    expect(regexMatches('needle', `needle${tail}`)).toBe(true);
  });
});
