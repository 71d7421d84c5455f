import { describe, expect, it } from 'vitest';
import { newRenderState } from '../../src/templates/helpers.js';
import { TemplateProblem } from '../../src/templates/problem.js';
import {
  MAX_BLOCK_DEPTH,
  MAX_TEMPLATE_BYTES,
  compileTemplate,
  secretNamesIn,
  type EscapeContext,
} from '../../src/templates/template-env.js';

const data = {
  email: 'jane.doe+news@example.com',
  id: '00000000-0000-4000-8000-000000000001',
  account: 'acme',
  campaign: null,
  occurredAt: null,
  receivedAt: '2024-05-01T10:00:00.000Z',
  source: null,
  attributes: { plan: 'gold', first: 'Jane' },
  attempt: 3,
  settings: { listId: 'list/42', double: true },
  engine: { sandboxUrl: 'http://127.0.0.1:8787/sandbox/' },
};

function render(source: string, context: EscapeContext = 'text', values: object = data): string {
  return compileTemplate(source, context).render(values, newRenderState({ get: () => undefined }));
}

function compileError(source: string, context: EscapeContext = 'text'): string {
  try {
    compileTemplate(source, context);
  } catch (error) {
    expect(error).toBeInstanceOf(TemplateProblem);
    return (error as Error).message;
  }
  throw new Error(`expected ${source} not to compile`);
}

function renderError(source: string, context: EscapeContext = 'text', values: object = data): string {
  const template = compileTemplate(source, context);
  try {
    template.render(values, newRenderState({ get: () => undefined }));
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`expected ${source} to fail when rendered`);
}

describe('url context', () => {
  it('percent-encodes values in the path but keeps @ and the literal text', () => {
    expect(render('https://api.example.com/v1/lists/{{settings.listId}}/members/{{email}}', 'url')).toBe(
      'https://api.example.com/v1/lists/list%2F42/members/jane.doe%2Bnews@example.com',
    );
  });

  it('encodes spaces, ampersands and equals signs in the query', () => {
    const values = { ...data, attributes: { q: 'a b&c=d?#' } };
    expect(render('https://x.example/s?q={{attributes.q}}&n=1', 'url', values)).toBe(
      'https://x.example/s?q=a%20b%26c%3Dd%3F%23&n=1',
    );
  });

  it('encodes @ too before the path, so a value cannot change the host', () => {
    const values = { ...data, settings: { sub: 'evil.example@good' } };
    expect(render('https://{{settings.sub}}.crm.example/x/{{email}}', 'url', values)).toBe(
      'https://evil.example%40good.crm.example/x/jane.doe%2Bnews@example.com',
    );
  });

  it('inserts a leading expression as the base URL, without its trailing slash', () => {
    expect(render('{{engine.sandboxUrl}}/crm/{{email}}', 'url')).toBe(
      'http://127.0.0.1:8787/sandbox/crm/jane.doe%2Bnews@example.com',
    );
  });

  it('refuses a leading expression that is not an http(s) URL', () => {
    expect(renderError('{{email}}/x', 'url')).toMatch(/absolute http\(s\) URL/);
    const values = { ...data, settings: { base: 'http://a.example/\nx' } };
    expect(renderError('{{settings.base}}/x', 'url', values)).toMatch(/absolute http\(s\) URL/);
    const withQuery = { ...data, settings: { base: 'https://a.example/?k=1' } };
    expect(renderError('{{settings.base}}/x', 'url', withQuery)).toBe(
      'the base URL must not have a query or fragment',
    );
  });

  it('does not encode the output of urlencode twice', () => {
    expect(render('https://x.example/{{urlencode email}}', 'url')).toBe(
      'https://x.example/jane.doe%2Bnews%40example.com',
    );
  });
});

describe('header and text contexts', () => {
  it('inserts header values unchanged', () => {
    expect(render('Token {{attributes.first}} <{{email}}>', 'header')).toBe(
      'Token Jane <jane.doe+news@example.com>',
    );
  });

  it('leaves JSON text raw (escaping happens in JSON.stringify)', () => {
    const values = { ...data, attributes: { note: 'say "hi" \\ bye' } };
    expect(render('{{attributes.note}}!', 'text', values)).toBe('say "hi" \\ bye!');
  });

  it('refuses to turn objects into text', () => {
    expect(renderError('{{attributes}}')).toBe(
      'JSON string value: got an object, not text; use {{json ...}} to write it as JSON',
    );
    expect(render('{{json attributes}}')).toBe('{"plan":"gold","first":"Jane"}');
  });

  it('evaluates a single expression to its raw value in the value context', () => {
    const state = newRenderState({ get: () => undefined });
    expect(compileTemplate('{{attempt}}', 'value').evaluate(data, state)).toBe(3);
    expect(compileTemplate('{{settings.double}}', 'value').evaluate(data, state)).toBe(true);
    expect(compileTemplate('{{attributes}}', 'value').evaluate(data, state)).toEqual({
      plan: 'gold',
      first: 'Jane',
    });
    expect(compileError('n={{attempt}}', 'value')).toBe('a typed value must be exactly one {{expression}}');
  });
});

describe('strict mode', () => {
  it('fails on an unknown variable, also inside helper arguments', () => {
    expect(renderError('{{emial}}')).toBe('unknown variable "emial" (line 1, column 3)');
    expect(renderError('{{md5 emial}}')).toMatch(/^unknown variable "emial"/);
    expect(renderError('{{#if campain}}x{{/if}}')).toMatch(/^unknown variable "campain"/);
    expect(renderError('{{settings.nope}}')).toMatch(/^unknown variable "nope"/);
  });

  it('lets absent optional fields and attributes render empty', () => {
    expect(render('[{{campaign}}][{{source}}][{{attributes.missing}}]')).toBe('[][][]');
    expect(render("{{default campaign 'none'}}/{{default attributes.tier 'free'}}")).toBe('none/free');
  });

  it('does not reveal the value it searched in when a lookup fails', () => {
    expect(renderError('{{email.domain}}')).toBe('unknown variable "domain" (its parent is not an object)');
  });
});

describe('compile-time checks', () => {
  it('rejects unknown helpers and internal escapers', () => {
    expect(compileError('{{shout email}}')).toBe('line 1, column 1: unknown helper "shout"');
    expect(compileError('{{log email}}')).toBe('line 1, column 1: unknown helper "log"');
    expect(compileError("{{lookup attributes 'plan'}}")).toBe('line 1, column 1: unknown helper "lookup"');
    expect(compileError('{{__url email}}')).toBe('line 1, column 1: unknown helper "__url"');
    expect(compileError('{{lowercase (shout email)}}')).toBe('line 1, column 13: unknown helper "shout"');
  });

  it('checks helper arity and refuses name=value options', () => {
    expect(compileError('{{md5}}')).toBe('line 1, column 1: md5 takes 1 argument, got 0');
    expect(compileError('{{eq 1 2 3}}')).toBe('line 1, column 1: eq takes 2 arguments, got 3');
    expect(compileError('{{md5 email salt=1}}')).toBe('line 1, column 1: md5 takes no name=value options');
  });

  it('refuses partials, decorators, unknown blocks and unknown data variables', () => {
    expect(compileError('{{> header}}')).toBe(
      'line 1, column 1: partials are not supported; use helpers and {{#if}}/{{#each}}',
    );
    expect(compileError('{{#campaign}}x{{/campaign}}')).toBe(
      'line 1, column 1: blocks are limited to {{#if}}, {{#unless}}, {{#each}} and {{#with}}',
    );
    expect(compileError('{{@relay}}')).toBe(
      'line 1, column 3: @relay is not available; use @index, @key, @first, @last or @root',
    );
  });

  it('reports syntax errors', () => {
    expect(compileError('{{#if campaign}}x')).toMatch(/Parse error|doesn't match/);
  });

  it('requires literal secret names and collects them', () => {
    expect(compileError('{{secret email}}')).toBe(
      "line 1, column 1: write secret names in quotes: {{secret 'NAME'}}",
    );
    expect(
      secretNamesIn("{{secret 'B'}}:{{base64 (secret 'A')}}{{#if campaign}}{{secret 'B'}}{{/if}}"),
    ).toEqual(['A', 'B']);
    expect(secretNamesIn('{{#if}}')).toEqual([]);
  });
});

describe('prototype access', () => {
  it.each([
    '{{constructor}}',
    '{{__proto__}}',
    '{{email.constructor}}',
    '{{attributes.__proto__.x}}',
    '{{json attributes.toString}}',
  ])('refuses %s at compile time', (source) => {
    expect(compileError(source)).toMatch(/cannot be used in a template$/);
  });

  it('does not leak inherited properties reached through block context', () => {
    // `list` is a string: its inherited `length` must not resolve, nor quote the string in the error.
    const values = { ...data, attributes: { list: 'x' } };
    expect(renderError('{{#with attributes}}{{list.length}}{{/with}}', 'text', values)).toMatch(
      /^unknown variable "length"/,
    );
  });
});

describe('limits', () => {
  it(`refuses templates over ${MAX_TEMPLATE_BYTES} bytes, counted in UTF-8`, () => {
    expect(render('a'.repeat(MAX_TEMPLATE_BYTES))).toHaveLength(MAX_TEMPLATE_BYTES);
    expect(compileError('é'.repeat(MAX_TEMPLATE_BYTES / 2 + 1))).toBe(
      'template is 8194 bytes; the limit is 8192',
    );
  });

  it(`allows ${MAX_BLOCK_DEPTH} nested blocks and refuses one more`, () => {
    const nest = (n: number) => '{{#if attempt}}'.repeat(n) + 'deep' + '{{/if}}'.repeat(n);
    expect(render(nest(MAX_BLOCK_DEPTH))).toBe('deep');
    expect(compileError(nest(MAX_BLOCK_DEPTH + 1))).toMatch(/blocks nest deeper than 8$/);
  });

  it('supports each with @index and block params', () => {
    const values = { ...data, settings: { tags: ['a', 'b'] } };
    expect(render('{{#each settings.tags as |tag|}}{{@index}}={{tag}};{{/each}}', 'text', values)).toBe(
      '0=a;1=b;',
    );
  });
});

describe('one set-up per template', () => {
  // Helpers and prototype rules are set up when a template is compiled, not on each render
  // (template-env.ts, buildTemplate): every render must still see its own data and render state.
  it('renders with each call’s own data, helpers and loop state, over many renders', () => {
    const template = compileTemplate(
      '{{lowercase email}}:{{#each settings.tags as |tag|}}{{@index}}{{tag}}{{/each}}:{{#if attempt}}{{attempt}}{{else}}none{{/if}}',
      'text',
    );
    for (let i = 0; i < 50; i++) {
      const values = {
        ...data,
        email: `User${i}@Example.com`,
        attempt: i,
        settings: { tags: ['x', `y${i}`] },
      };
      const state = newRenderState({ get: () => undefined });
      expect(template.render(values, state)).toBe(`user${i}@example.com:0x1y${i}:${i === 0 ? 'none' : i}`);
    }
  });

  it('keeps refusing prototype properties after the first render', () => {
    const template = compileTemplate('{{#with attributes}}{{list.length}}{{/with}}', 'text');
    const values = { ...data, attributes: { list: 'x' } };
    for (let i = 0; i < 3; i++)
      expect(() => template.render(values, newRenderState({ get: () => undefined }))).toThrow(
        /^unknown variable "length"/,
      );
  });
});
