import { afterEach, describe, expect, it, vi } from 'vitest';
import { jsonMatch, ruleSchema, type JsonMatch, type Rule } from '../../src/config/connection-schema.js';
import type { SendOutcome } from '../../src/domain/delivery.js';
import { classify } from '../../src/rules/classify.js';
import { jsonMatches, parseJsonBody, selectJson } from '../../src/rules/json-match.js';

const NOW = Date.parse('2026-11-23T12:00:00Z');
const identity = (value: string) => value;
const test = (input: unknown): JsonMatch => jsonMatch.parse(input);
const holds = (input: unknown, body: string, resolve = identity) =>
  jsonMatches(test(input), parseJsonBody(body), resolve);
const response = (status: number, body: string): SendOutcome => ({
  kind: 'response',
  status,
  headers: {},
  body,
  bodyTruncated: false,
  durationMs: 5,
});
const rules = (...input: unknown[]): Rule[] => input.map((rule) => ruleSchema.parse(rule));

afterEach(() => vi.restoreAllMocks());

describe('JSON tests', () => {
  const body = JSON.stringify({
    data: { id: 'u-1', status: 'unsubscribed', score: 3, note: null },
    errors: [
      { code: 'INVALID_EMAIL', email: 'x@example.com' },
      { code: 'DUPLICATE', email: 'y@example.com' },
    ],
    tags: ['vip', 'newsletter'],
  });

  it('exists: a selected value, null included, or nothing selected', () => {
    expect(holds({ path: '$.data.id', exists: true }, body)).toBe(true);
    expect(holds({ path: '$.data.note', exists: true }, body)).toBe(true);
    expect(holds({ path: '$.data.missing', exists: true }, body)).toBe(false);
    expect(holds({ path: '$.data.missing', exists: false }, body)).toBe(true);
    expect(holds({ path: '$.errors[*].email', exists: false }, body)).toBe(false);
    expect(holds({ path: '$.errors[*].email', exists: false }, '{"errors":[]}')).toBe(true);
  });
  it('equals: any selected value, strictly', () => {
    expect(holds({ path: '$.errors[*].code', equals: 'DUPLICATE' }, body)).toBe(true);
    expect(holds({ path: '$.data.score', equals: 3 }, body)).toBe(true);
    expect(holds({ path: '$.data.score', equals: '3' }, body)).toBe(false);
    expect(holds({ path: '$.data.note', equals: null }, body)).toBe(true);
    expect(holds({ path: '$.data.missing', equals: null }, body)).toBe(false);
  });
  it('in: any selected value is one of the list', () => {
    expect(holds({ path: '$.data.status', in: ['unsubscribed', 'cleaned'] }, body)).toBe(true);
    expect(holds({ path: '$.data.status', in: ['subscribed', 'pending'] }, body)).toBe(false);
    expect(holds({ path: '$.data.score', in: [1, 2, 3] }, body)).toBe(true);
  });
  it('contains: an element of a selected array, or text in a selected string', () => {
    expect(holds({ path: '$.tags', contains: 'vip' }, body)).toBe(true);
    expect(holds({ path: '$.tags', contains: 'vi' }, body)).toBe(false);
    expect(holds({ path: '$.data.status', contains: 'subscr' }, body)).toBe(true);
    expect(holds({ path: '$.data.score', contains: 3 }, body)).toBe(false);
  });
  it('renders string values, in every kind of test, through resolve', () => {
    const resolve = vi.fn((value: string) => value.replace('{{email}}', 'x@example.com'));
    expect(holds({ path: '$.errors[*].email', equals: '{{email}}' }, body, resolve)).toBe(true);
    expect(holds({ path: '$.errors[*].email', in: ['{{email}}'] }, body, resolve)).toBe(true);
    expect(holds({ path: '$.errors[0].email', contains: '{{email}}' }, body, resolve)).toBe(true);
    expect(resolve).toHaveBeenCalledTimes(3);
    expect(resolve).toHaveBeenCalledWith('{{email}}');
  });
  it('does not let a value that renders empty match every string', () => {
    expect(holds({ path: '$.data.status', contains: '{{attributes.missing}}' }, body, () => '')).toBe(false);
  });
  it('never matches a body that is not JSON, even for exists: false', () => {
    for (const text of ['<html>502 Bad Gateway</html>', '', '{"success": fal', 'OK']) {
      expect(holds({ path: '$.success', exists: false }, text)).toBe(false);
    }
  });
  it('reads JSON whose root is not an object', () => {
    expect(holds({ path: '$', equals: 'queued' }, '"queued"')).toBe(true);
    expect(holds({ path: '$[*].status', equals: 'error' }, '[{"status":"ok"},{"status":"error"}]')).toBe(
      true,
    );
    expect(holds({ path: '$.a', exists: false }, 'null')).toBe(true);
  });
  it('refuses a path that does not compile at validation, so none reaches classification', () => {
    expect(selectJson('$[?(@.x ==)]', [{ x: 1 }])).toBeUndefined();
    expect(() => test({ path: '$[?(@.x ==)]', exists: false })).toThrow(/not a valid JSONPath/);
  });
  it('a test on an answer nested deeper than `..` searches does not hold, either way', () => {
    let deep: unknown = { code: 'X' };
    for (let level = 0; level < 1_000; level += 1) deep = { data: deep };
    const body = JSON.stringify(deep);
    expect(selectJson('$..code', deep)).toBeUndefined();
    expect(holds({ path: '$..code', exists: true }, body)).toBe(false);
    expect(holds({ path: '$..code', exists: false }, body)).toBe(false);
    expect(holds({ path: '$.data.data', exists: true }, body)).toBe(true);
    expect(holds({ path: '$..code', equals: 'X' }, JSON.stringify({ a: { b: [{ code: 'X' }] } }))).toBe(true);
  });
  it('evaluates filters without running code', () => {
    const scope = globalThis as { pwned?: number };
    expect(selectJson('$[?(globalThis.pwned = 1)]', [{ x: 1 }])).toBeUndefined();
    expect(selectJson('$[?(@.x.constructor.constructor("return 1")())]', [{ x: 1 }])).toBeUndefined();
    expect(scope.pwned).toBeUndefined();
  });
});

describe('JSON tests inside classify', () => {
  const list = rules(
    { when: { status: 400, json: { path: '$.code', equals: 'A' } }, then: 'fail' },
    { when: { json: { path: '$.code', equals: 'B' } }, then: 'retry' },
    {
      when: {
        json: [
          { path: '$.ok', equals: true },
          { path: '$.code', equals: 'C' },
        ],
      },
      then: 'success',
    },
  );

  it('parses the body once per call, however many rules test it', () => {
    const parse = vi.spyOn(JSON, 'parse');
    expect(classify(list, response(400, '{"code":"C","ok":true}'), NOW)).toMatchObject({
      verdict: 'success',
      rule: 2,
    });
    expect(parse).toHaveBeenCalledTimes(1);
  });
  it('does not parse at all when no JSON test is reached', () => {
    const parse = vi.spyOn(JSON, 'parse');
    classify(
      rules({ when: { status: 404, json: { path: '$.x', exists: true } }, then: 'fail' }),
      response(500, '{}'),
      NOW,
    );
    expect(parse).not.toHaveBeenCalled();
  });
  it('does not throw on a body cut short', () => {
    const cut = { ...response(400, '{"code":"A","detail":"lo'), bodyTruncated: true } as SendOutcome;
    expect(classify(list, cut, NOW)).toMatchObject({ verdict: 'fail', rule: 'default', code: 'HTTP_STATUS' });
  });
});
