import { describe, expect, it } from 'vitest';
import { connectionSchema } from '../../src/config/connection-schema.js';
import { TemplateError } from '../../src/errors.js';
import { newRenderState, type RenderOptions } from '../../src/templates/helpers.js';
import { TemplateProblem } from '../../src/templates/problem.js';
import {
  RENDER_BUDGET_MS,
  checkTemplates,
  compileConnection,
  renderRequest,
  templateContext,
} from '../../src/templates/render-request.js';
import {
  compileTemplate,
  type EscapeContext,
  type TemplateOptions,
} from '../../src/templates/template-env.js';

/** 2024-05-01T10:00:00.123Z, a Wednesday. */
const NOW = Date.UTC(2024, 4, 1, 10, 0, 0, 123);
const fixed: RenderOptions = { now: () => NOW };

const data = {
  email: 'Jane.Doe+news@mail.example.co.uk',
  id: 'u-1',
  occurredAt: '2024-04-30T23:30:00+02:00',
  receivedAt: '2024-05-01T10:00:00.000Z',
  campaign: null,
  attempt: 2,
  attributes: { day: '2024-02-29', bad: '2024-02-30', local: '2024-05-01T10:00:00', junk: 'yesterday' },
  settings: { listId: 'L-42', group: 7, on: true },
};

function run(source: string, options: RenderOptions = fixed, context: EscapeContext = 'text'): string {
  return compileTemplate(source, context, { settings: Object.keys(data.settings) }).render(
    data,
    newRenderState({ get: () => undefined }, options),
  );
}

function value(source: string): unknown {
  return compileTemplate(source, 'value').evaluate(data, newRenderState({ get: () => undefined }, fixed));
}

function problem(work: () => unknown): string {
  try {
    work();
  } catch (error) {
    expect(error).toBeInstanceOf(TemplateProblem);
    return (error as Error).message;
  }
  throw new Error('expected a TemplateProblem');
}

const compileError = (source: string, options: TemplateOptions = {}) =>
  problem(() => compileTemplate(source, 'text', options));

describe('now', () => {
  it('formats the injected clock as ISO 8601, RFC 2822, epoch seconds and ms', () => {
    expect(run('{{now}}')).toBe('2024-05-01T10:00:00.123Z');
    expect(run("{{now 'iso'}}")).toBe('2024-05-01T10:00:00.123Z');
    expect(run("{{now 'rfc2822'}}")).toBe('Wed, 01 May 2024 10:00:00 +0000');
    expect(run("{{now 'epoch'}}")).toBe('1714557600');
    expect(run("{{now 'epoch_ms'}}")).toBe('1714557600123');
  });

  it('keeps epoch numbers typed in a JSON leaf', () => {
    expect(value("{{now 'epoch'}}")).toBe(1714557600);
    expect(value("{{now 'epoch_ms'}}")).toBe(1714557600123);
  });

  it('reads the clock once per render, so every {{now}} agrees', () => {
    let t = NOW;
    expect(run("{{now 'epoch_ms'}} {{now 'epoch_ms'}}", { now: () => t++ })).toBe(
      '1714557600123 1714557600123',
    );
  });

  it('refuses unknown and unquoted formats at compile time', () => {
    expect(compileError("{{now 'unix'}}")).toBe(
      "line 1, column 1: unknown time format \"unix\"; use 'iso', 'rfc2822', 'epoch', 'epoch_ms'",
    );
    expect(compileError('{{now attempt}}')).toBe(
      "line 1, column 1: write the format in quotes, e.g. {{now 'epoch'}}",
    );
    expect(compileError("{{now 'iso' 'x'}}")).toBe('line 1, column 1: now takes 0 to 1 arguments, got 2');
  });
});

describe('date', () => {
  it('formats an ISO field like now does, honouring its offset', () => {
    expect(run('{{date occurredAt}}')).toBe('2024-04-30T21:30:00.000Z');
    expect(run("{{date occurredAt 'epoch'}}")).toBe('1714512600');
    expect(run("{{date receivedAt 'rfc2822'}}")).toBe('Wed, 01 May 2024 10:00:00 +0000');
    expect(run("{{date attributes.day 'epoch_ms'}}")).toBe('1709164800000');
  });

  it('fails naming the field when it is absent or not an ISO date', () => {
    expect(problem(() => run('{{date campaign}}'))).toBe('date: campaign is not set');
    expect(problem(() => run('{{date attributes.missing}}'))).toBe('date: attributes.missing is not set');
    for (const field of ['bad', 'local', 'junk']) {
      expect(problem(() => run(`{{date attributes.${field}}}`))).toBe(
        `date: attributes.${field} is not an ISO 8601 date (like 2024-05-01 or 2024-05-01T10:00:00Z)`,
      );
    }
  });

  it('falls through inside default instead of failing', () => {
    expect(run("{{default (date campaign 'epoch') (date receivedAt 'epoch')}}")).toBe('1714557600');
    expect(run("{{default (date attributes.junk) 'unknown'}}")).toBe('unknown');
    // Outside default, a nested call still fails.
    expect(problem(() => run('{{lowercase (date attributes.junk)}}'))).toMatch(/^date: attributes.junk/);
  });

  it('checks its format at compile time', () => {
    expect(compileError("{{date occurredAt 'unix'}}")).toMatch(/unknown time format "unix"/);
    expect(compileError('{{date}}')).toBe('line 1, column 1: date takes 1 to 2 arguments, got 0');
  });
});

describe('uuid', () => {
  it('gives a fresh v4 per call, recorded in the render state', () => {
    const state = newRenderState({ get: () => undefined });
    const out = compileTemplate('{{uuid}} {{uuid}}', 'text').render(data, state);
    const [a, b] = out.split(' ');
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a).not.toBe(b);
    expect(state.uuids).toEqual([a, b]);
  });

  it('uses the injected source', () => {
    expect(run('{{uuid}}', { uuid: () => '00000000-0000-4000-8000-000000000042' })).toBe(
      '00000000-0000-4000-8000-000000000042',
    );
    expect(compileError('{{uuid email}}')).toBe('line 1, column 1: uuid takes 0 arguments, got 1');
  });
});

describe('split and after', () => {
  it('split gives the part at an index, counting from the end when negative, empty when missing', () => {
    expect(run("{{split email '@' 0}}|{{split email '@' 1}}|{{split email '@' 2}}")).toBe(
      'Jane.Doe+news|mail.example.co.uk|',
    );
    expect(run("{{split email '.' -1}}")).toBe('uk');
    expect(compileError("{{split email '@' 1.5}}")).toBe(
      'line 1, column 1: split: the index must be a whole number',
    );
    expect(problem(() => run("{{split email '' 1}}"))).toBe('split: the separator must not be empty');
  });

  it('after gives the text after the first separator, or nothing', () => {
    expect(run("{{after email '@'}}")).toBe('mail.example.co.uk');
    expect(run("{{after email '.'}}")).toBe('Doe+news@mail.example.co.uk');
    expect(run("[{{after email '#'}}]")).toBe('[]');
    expect(run("{{uppercase (after email '@')}}")).toBe('MAIL.EXAMPLE.CO.UK');
  });
});

describe('setting', () => {
  it('reads a setting, keeping its type', () => {
    expect(run("{{setting 'listId'}}")).toBe('L-42');
    expect(value("{{setting 'group'}}")).toBe(7);
    expect(run("{{#with attributes}}{{setting 'on'}}{{/with}}")).toBe('true');
  });

  it('refuses an unknown or unquoted name at compile time', () => {
    expect(compileError("{{setting 'listID'}}", { settings: ['listId', 'group'] })).toBe(
      'line 1, column 1: unknown setting "listID"; its settings are listId, group; did you mean "listId"?',
    );
    expect(compileError("{{setting 'x'}}", { settings: [] })).toBe(
      'line 1, column 1: unknown setting "x"; it has no settings',
    );
    expect(compileError('{{setting listId}}')).toBe(
      "line 1, column 1: write setting names in quotes: {{setting 'NAME'}}",
    );
  });

  it('is a validation issue of the connection, naming the field', () => {
    const conn = connectionSchema.parse({
      id: 'acme',
      account: 'acme',
      name: 'Acme',
      settings: { listId: 'L1' },
      request: {
        url: "https://x.example/lists/{{setting 'listid'}}",
        body: { json: { l: "{{setting 'listId'}}" } },
      },
    });
    expect(checkTemplates(conn)).toEqual([
      {
        field: 'request.url',
        reason:
          'line 1, column 25: unknown setting "listid"; its settings are listId; did you mean "listId"?',
      },
    ]);
  });
});

describe('xml helper', () => {
  it('escapes explicitly, for XML inside other contexts', () => {
    expect(run(`{{xml "a & b <c> \\"d\\" 'e'"}}`)).toBe('a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;');
  });
});

describe('render budget', () => {
  const slow = (clock: () => number) => {
    const conn = connectionSchema.parse({
      id: 'acme',
      account: 'acme',
      name: 'Acme',
      request: {
        url: 'https://x.example/u',
        headers: { 'X-Fine': '{{email}}' },
        body: { json: { loops: '{{#each attributes}}{{#each @root.attributes}}x{{/each}}{{/each}}' } },
      },
    });
    const many = Object.fromEntries(Array.from({ length: 4_000 }, (_, i) => [`a${i}`, 'v']));
    const context = templateContext(
      { id: 'u', account: 'acme', email: 'a@b.example', receivedAt: data.receivedAt, attributes: many },
      conn,
      1,
      { sandboxUrl: 'http://x' },
    );
    return () =>
      renderRequest(compileConnection(conn), context, { get: () => undefined }, undefined, { timer: clock });
  };

  it('stops a runaway loop with a TemplateError naming the field', () => {
    // 16 million iterations of literal text (seconds of work): no helper runs, so only the per-iteration check can stop it.
    const started = Date.now();
    let error: unknown;
    try {
      slow(() => performance.now())();
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(TemplateError);
    expect((error as TemplateError).field).toBe('request.body.json.loops');
    expect((error as Error).message).toBe(
      `connection acme: request.body.json.loops: render took longer than ${RENDER_BUDGET_MS} ms`,
    );
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('counts time with the injected timer', () => {
    let t = 0;
    const ticking = () => t++;
    let error: unknown;
    try {
      slow(ticking)();
    } catch (caught) {
      error = caught;
    }
    // 1 ms per check: URL and header take a handful, the loop runs past the budget soon after.
    expect((error as TemplateError).field).toBe('request.body.json.loops');
    expect(t).toBeGreaterThan(RENDER_BUDGET_MS);
    expect(t).toBeLessThan(RENDER_BUDGET_MS + 50);
  });
});
