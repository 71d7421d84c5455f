import { describe, expect, it } from 'vitest';
import { newRenderState, type RenderState } from '../../src/templates/helpers.js';
import { compileTemplate } from '../../src/templates/template-env.js';

const data = {
  email: 'Jane.Doe+News@Example.com',
  lower: 'jane.doe+news@example.com',
  padded: '  spaced out \t',
  name: 'Jane Doe ü',
  campaign: null,
  empty: '',
  attempt: 2,
  yes: true,
  no: false,
  attributes: { plan: 'gold', quote: 'a"b' },
};

const secrets: Record<string, string> = { API_KEY: 'k3y/with+chars', OTHER: 'other-secret' };

function run(source: string, state: RenderState = newRenderState({ get: (name) => secrets[name] })): string {
  return compileTemplate(source, 'text').render(data, state);
}

function value(source: string): unknown {
  return compileTemplate(source, 'value').evaluate(data, newRenderState({ get: () => undefined }));
}

describe('text helpers', () => {
  it('lowercase, uppercase, trim', () => {
    expect(run('{{lowercase email}}')).toBe('jane.doe+news@example.com');
    expect(run('{{uppercase email}}')).toBe('JANE.DOE+NEWS@EXAMPLE.COM');
    expect(run('[{{trim padded}}]')).toBe('[spaced out]');
    expect(run('[{{lowercase campaign}}]')).toBe('[]');
  });

  it('md5, sha1, sha256 give lowercase hex of the UTF-8 text', () => {
    expect(run('{{md5 lower}}')).toBe('6a58e7286ac0e6944c137f0fb3f101b1');
    expect(run('{{sha1 lower}}')).toBe('b9c90c16866d2790afdd88537cbf736eb10c29c2');
    expect(run('{{sha256 lower}}')).toBe('dbf1912b4cad4df9823f627874244e64b50a6ac550b9cb33b17df671a26679db');
    expect(run('{{sha256 (lowercase (trim email))}}')).toBe(
      'dbf1912b4cad4df9823f627874244e64b50a6ac550b9cb33b17df671a26679db',
    );
  });

  it('base64 and urlencode', () => {
    expect(run('{{base64 name}}')).toBe('SmFuZSBEb2Ugw7w=');
    expect(run('{{urlencode email}}')).toBe('Jane.Doe%2BNews%40Example.com');
    expect(run('{{urlencode "a b/c?d"}}')).toBe('a%20b%2Fc%3Fd');
  });

  it('json writes any value as JSON text', () => {
    expect(run('{{json attributes}}')).toBe('{"plan":"gold","quote":"a\\"b"}');
    expect(run('{{json attempt}}|{{json campaign}}|{{json email}}')).toBe(
      '2|null|"Jane.Doe+News@Example.com"',
    );
    expect(run('{{json attributes.none}}')).toBe('null');
  });

  it('text helpers turn numbers and booleans into text and refuse objects', () => {
    expect(run('{{uppercase yes}}-{{md5 attempt}}')).toBe('TRUE-c81e728d9d4c2f636f067f89cc14862c');
    expect(() => run('{{lowercase attributes}}')).toThrow(
      'lowercase: got an object, not text; use {{json ...}} to write it as JSON',
    );
  });
});

describe('logic helpers', () => {
  it('default picks the first value that is not null, undefined or empty', () => {
    expect(run("{{default campaign 'none'}}")).toBe('none');
    expect(run("{{default empty 'blank'}}")).toBe('blank');
    expect(run("{{default attributes.tier attributes.plan 'x'}}")).toBe('gold');
    expect(run("{{default email 'none'}}")).toBe('Jane.Doe+News@Example.com');
    expect(value('{{default attributes.tier attempt}}')).toBe(2);
  });

  it('eq, and, or, not return booleans', () => {
    expect(value('{{eq attempt 2}}')).toBe(true);
    expect(value("{{eq attempt '2'}}")).toBe(false);
    expect(value('{{and yes attempt}}')).toBe(true);
    expect(value('{{and yes no}}')).toBe(false);
    expect(value('{{or no campaign}}')).toBe(false);
    expect(value('{{or no email}}')).toBe(true);
    expect(value('{{not campaign}}')).toBe(true);
    expect(value('{{not yes}}')).toBe(false);
  });

  it('drive blocks', () => {
    expect(run("{{#if (and yes (eq attributes.plan 'gold'))}}vip{{else}}std{{/if}}")).toBe('vip');
    expect(run('{{#unless (or no campaign)}}none{{/unless}}')).toBe('none');
  });
});

describe('secret', () => {
  it('returns the value from the injected source and records it', () => {
    const state = newRenderState({ get: (name) => secrets[name] });
    expect(run("key={{secret 'API_KEY'}}", state)).toBe('key=k3y/with+chars');
    expect([...state.revealed]).toEqual(['k3y/with+chars']);
  });

  it('records values derived from a secret, so they are redacted too', () => {
    const state = newRenderState({ get: (name) => secrets[name] });
    expect(run("{{base64 (uppercase (secret 'API_KEY'))}}", state)).toBe('SzNZL1dJVEgrQ0hBUlM=');
    expect([...state.revealed].sort()).toEqual(['K3Y/WITH+CHARS', 'SzNZL1dJVEgrQ0hBUlM=', 'k3y/with+chars']);
  });

  it('does not record values unrelated to a secret', () => {
    const state = newRenderState({ get: (name) => secrets[name] });
    run("{{secret 'OTHER'}} {{md5 email}}", state);
    expect([...state.revealed]).toEqual(['other-secret']);
  });

  it('fails naming the missing secret, never a value', () => {
    const state = newRenderState({ get: (name) => (name === 'EMPTY' ? '' : undefined) });
    expect(() => run("{{secret 'MISSING'}}", state)).toThrow('secret "MISSING" is not set');
    expect(() => run("{{secret 'EMPTY'}}", state)).toThrow('secret "EMPTY" is not set');
  });

  it('reads only the source passed with the render', () => {
    const a = newRenderState({ get: () => 'from-a' });
    const b = newRenderState({ get: () => 'from-b' });
    const template = compileTemplate("{{secret 'X'}}", 'text');
    expect(template.render(data, a)).toBe('from-a');
    expect(template.render(data, b)).toBe('from-b');
  });
});
