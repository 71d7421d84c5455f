import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { newRenderState } from '../../src/templates/helpers.js';
import { TemplateProblem } from '../../src/templates/problem.js';
import { compileTemplate, type EscapeContext } from '../../src/templates/template-env.js';

// Templates that are only text and `{{name.path}}`s render without Handlebars (template-env.ts);
// Handlebars stays the reference: the same output, the same error, the same secrets to redact.

const SECRET = 'sekrit-0123456789';

const data = {
  email: 'jane.doe+news@example.com',
  id: '00000000-0000-4000-8000-000000000001',
  campaign: null,
  receivedAt: '2024-05-01T10:00:00.000Z',
  attributes: { plan: 'gold', note: `has ${SECRET} inside` },
  attempt: 3,
  settings: { listId: 'list/42', double: true },
  engine: { sandboxUrl: 'http://127.0.0.1:8787/sandbox/' },
  nested: { a: { b: 'deep' } },
  list: ['x', 'y'],
  undefinedOwn: undefined,
};

type Outcome = { output: unknown; revealed: string[] } | { error: string };

function outcome(source: string, context: EscapeContext, values: object, viaHandlebars: boolean): Outcome {
  const compiled = compileTemplate(source, context, { viaHandlebars });
  const state = newRenderState({ get: (name) => (name === 'KEY' ? SECRET : undefined) });
  // As if an earlier field of the request had read the secret: what derives from it must be marked.
  state.revealed.add(SECRET);
  try {
    const output = context === 'value' ? compiled.evaluate(values, state) : compiled.render(values, state);
    return { output, revealed: [...state.revealed].sort() };
  } catch (error) {
    return {
      error: error instanceof TemplateProblem ? error.message : `not a TemplateProblem: ${String(error)}`,
    };
  }
}

function expectSame(source: string, context: EscapeContext, values: object = data): Outcome {
  const direct = outcome(source, context, values, false);
  expect(direct, `${context}: ${source}`).toEqual(outcome(source, context, values, true));
  return direct;
}

describe('templates rendered without Handlebars', () => {
  it('are the plain ones: text, comments and {{name.path}}, nothing else', () => {
    const direct = (source: string, context: EscapeContext = 'text') =>
      compileTemplate(source, context).direct;
    expect(direct('{{email}}')).toBe(true);
    expect(direct('mailto:{{email}} ({{attributes.plan}}) {{!-- why --}}{{nested.a.b}}')).toBe(true);
    expect(direct('{{settings.listId}}', 'value')).toBe(true);
    expect(direct('{{engine.sandboxUrl}}/lists/{{settings.listId}}', 'url')).toBe(true);
    expect(direct('no expression at all')).toBe(true);
    expect(direct("{{default campaign 'none'}}")).toBe(false);
    expect(direct('{{lowercase email}}')).toBe(false);
    expect(direct('{{#if campaign}}{{campaign}}{{/if}}')).toBe(false);
    expect(direct('{{list.[0]}}')).toBe(true);
    expect(direct('{{this.email}}')).toBe(false);
    expect(direct('{{@root.email}}')).toBe(false);
    expect(direct('{{urlencode email}}', 'url')).toBe(false);
  });

  it('render as Handlebars does, in every escape context', () => {
    expect(expectSame('{{email}}', 'text')).toEqual({
      output: data.email,
      revealed: [SECRET],
    });
    expectSame('  {{~email~}}  and {{id}} ', 'text');
    expectSame('{{attributes.plan}}/{{attributes.absent}}', 'plain');
    expectSame('X {{settings.listId}}', 'header');
    expectSame('<a>{{email}}</a>{{attributes.plan}}', 'xml');
    expectSame('{{attempt}}', 'value');
    expectSame('{{settings.double}}', 'value');
    expectSame('{{nested}}', 'value');
    expectSame('{{campaign}}', 'value');
    expectSame('{{undefinedOwn}}', 'value');
    expectSame('{{list.length}}', 'text');
    expect(expectSame('{{list.[1]}}', 'text')).toMatchObject({ output: 'y' });
    // An empty first segment is the context itself to Handlebars (an object, here), not its '' key.
    expectSame('{{[]}}', 'text', { '': 'hi' });
    expectSame('{{[].x}}', 'text', { '': { x: 'deep' } });
    expectSame('{{[]}}', 'value', { '': 'hi' });
    expectSame('{{attributes.[]}}', 'text', { attributes: { '': 'empty key' } });
    expectSame('{{engine.sandboxUrl}}/lists/{{settings.listId}}?e={{email}}', 'url');
    expectSame('https://{{attributes.plan}}.example.com/x/{{email}}', 'url');
  });

  it('fail as Handlebars does, with its words', () => {
    const unknown = expectSame('{{emial}}', 'text');
    expect(unknown).toEqual({ error: expect.stringContaining('emial') });
    expectSame('{{nested.a.missing}}', 'text');
    expectSame('{{nested.nope.b}}', 'text');
    expectSame('{{email.x}}', 'text');
    expectSame('{{campaign.x}}', 'text');
    expectSame('{{attributes.plan.x}}', 'text');
    expectSame('{{nested}}', 'text');
    expectSame('{{list}}', 'header');
    expectSame('{{engine.sandboxUrl}}', 'url');
    expectSame('{{email}}/x', 'url');
  });

  it('mark what derives from a secret, as Handlebars does', () => {
    // The note holds the secret; percent-encoded, it is a new string that must be redacted too.
    const marked = expectSame('https://crm.example.com/n/{{attributes.note}}', 'url');
    expect(marked).toMatchObject({
      revealed: expect.arrayContaining([SECRET, 'has%20sekrit-0123456789%20inside']),
    });
    expectSame('<n>{{attributes.note}}</n>', 'xml');
  });

  it('agree with Handlebars on any plain template and any data', () => {
    const name = fc.constantFrom('email', 'id', 'campaign', 'x', 'y', 'attributes', 'length', 'a', 'b');
    const path = fc.array(name, { minLength: 1, maxLength: 3 }).map((parts) => parts.join('.'));
    const text = fc.stringMatching(/^[a-z /:?=&<>"'.-]{0,8}$/);
    const leaf = fc.oneof(
      fc.string({ maxLength: 6 }),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.constant(SECRET),
    );
    const value = fc.letrec<{ node: unknown }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small' },
        leaf,
        fc.array(tie('node'), { maxLength: 2 }),
        fc.dictionary(name, tie('node'), { maxKeys: 3 }),
      ),
    })).node;
    const values = fc.dictionary(name, value, { maxKeys: 6 });
    const template = fc
      .array(
        fc.oneof(
          text,
          path.map((p) => `{{${p}}}`),
        ),
        { minLength: 1, maxLength: 4 },
      )
      .map((parts) => parts.join(''));
    const context = fc.constantFrom<EscapeContext>('text', 'header', 'plain', 'xml');
    fc.assert(
      fc.property(template, context, values, (source, where, input) => {
        expect(outcome(source, where, input, false)).toEqual(outcome(source, where, input, true));
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(path, values, (p, input) => {
        const source = `{{${p}}}`;
        expect(outcome(source, 'value', input, false)).toEqual(outcome(source, 'value', input, true));
      }),
      { numRuns: 300 },
    );
  });
});
