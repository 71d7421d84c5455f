import { describe, expect, it } from 'vitest';
import { parseConnectionFile } from '../../src/config/load-connections.js';
import { sampleContext } from '../../src/templates/context.js';
import { compileConnection, renderRequest } from '../../src/templates/render-request.js';

/** A connection file with `value` as a JSON body leaf (line 7) and extra top-level YAML. */
const fileWith = (value: string, extra = '') => `id: acme
account: acme
name: Acme
${extra}request:
  url: https://crm.example.com/unsubscribe
  body:
    json: { email: "{{email}}", value: ${JSON.stringify(value)} }
`;

describe('nested #each: what validates renders at delivery', () => {
  it.each([
    ['{{#each attributes}}{{email}}{{/each}}', /unknown variable "email"/],
    ['{{#each attributes}}{{#unless this}}{{email}}{{/unless}}{{/each}}', /unknown variable "email"/],
    ['{{#each attributes}}{{#each attributes}}{{/each}}{{/each}}', /unknown variable "attributes"/],
    ['{{#each attributes}}{{#each ../attributes}}{{../this}}{{/each}}{{/each}}', /got an object/],
    [
      '{{#each attributes}}{{#each this}}{{this}}{{/each}}{{/each}}',
      /goes over a list or an object; this value is text/,
    ],
    ['{{#each campaign}}{{this}}{{/each}}', /goes over a list or an object/],
  ])('refuses %s at validation', (value, reason) => {
    const { connection, issues } = parseConnectionFile(fileWith(value), 'acme.yaml');
    expect(connection).toBeUndefined();
    expect(issues).toEqual([
      { file: 'acme.yaml', line: 7, field: 'request.body.json.value', reason: expect.stringMatching(reason) },
    ]);
  });

  it('accepts the nested forms that render, and they render with attributes', () => {
    for (const value of [
      '{{#each attributes}}{{@key}}={{this}};{{/each}}',
      '{{#each attributes}}{{#each @root.attributes}}{{@../key}}{{/each}}{{/each}}',
      '{{#each attributes}}{{../email}}{{/each}}',
    ]) {
      const { connection, issues } = parseConnectionFile(fileWith(value), 'acme.yaml');
      expect(issues, value).toEqual([]);
      const context = { ...sampleContext(connection!), campaign: null, attributes: { plan: 'pro' } };
      expect(() => renderRequest(compileConnection(connection!), context, { get: () => 'k' })).not.toThrow();
    }
  });
});
