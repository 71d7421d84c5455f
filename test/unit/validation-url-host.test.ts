import { describe, expect, it } from 'vitest';
import { parseConnectionFile } from '../../src/config/load-connections.js';

const file = (url: string, settings = '{}', auth = '') => `id: acme
account: acme
name: Acme
settings: ${settings}
request:
  url: ${JSON.stringify(url)}
${auth}  body: { json: { email: "{{email}}" } }
`;
const check = (url: string, settings?: string, auth?: string) =>
  parseConnectionFile(file(url, settings, auth), 'acme.yaml').issues;

describe('a request URL has a literal scheme and host, or a validated URL variable', () => {
  it.each([
    [
      "https://{{default campaign 'crm.example.com'}}/unsubscribe",
      /the host must be written out or come from a setting/,
    ],
    ['https://{{email}}/x', /the host must be written out or come from a setting/],
    [
      "https://api.{{default source 'x'}}.example.com/u",
      /the host must be written out or come from a setting/,
    ],
    [
      "{{default attributes.host 'https://crm.example.com'}}/u",
      /must start with \{\{engine.sandboxUrl\}\} or a setting/,
    ],
    [
      '{{#if campaign}}https://a.example.com{{else}}https://b.example.com{{/if}}/u',
      /must start with \{\{engine.sandboxUrl\}\}/,
    ],
    ["http{{default source 's'}}://crm.example.com/u", /write the scheme and host out/],
    ['https:///u', /the URL has no host/],
  ])('refuses %s', (url, reason) => {
    expect(check(url)).toEqual([
      { file: 'acme.yaml', line: 6, field: 'request.url', reason: expect.stringMatching(reason) },
    ]);
  });

  it('validates a setting used as the host, or as the start of the URL', () => {
    expect(check("https://{{setting 'apiHost'}}/v3", "{ apiHost: 'api.eu.sendgrid.com' }")).toEqual([]);
    expect(check('https://{{settings.dc}}.api.mailchimp.com/3.0', '{ dc: us21 }')).toEqual([]);
    expect(
      check("{{setting 'restEndpoint'}}/email/status", "{ restEndpoint: 'https://x.rest.example.com' }"),
    ).toEqual([]);
    expect(check('{{engine.sandboxUrl}}/crm/{{email}}')).toEqual([]);
    expect(check('https://crm.example.com:8443/u/{{email}}?c={{campaign}}')).toEqual([]);
    expect(check("https://{{setting 'apiHost'}}/v3", "{ apiHost: 'evil.example.com/path' }")).toEqual([
      expect.objectContaining({
        reason: expect.stringMatching(/setting apiHost is used in the host, so it must be a host name/),
      }),
    ]);
    expect(check("{{setting 'base'}}/u", "{ base: 'crm.example.com' }")).toEqual([
      expect.objectContaining({
        reason: expect.stringMatching(/setting base starts the URL, so it must be an absolute http\(s\) URL/),
      }),
    ]);
  });

  it('holds the OAuth2 token URL to the same rule', () => {
    const auth = (tokenUrl: string) =>
      `  auth: { type: oauth2_client_credentials, tokenUrl: ${JSON.stringify(tokenUrl)}, clientId: id, clientSecret: s }\n`;
    expect(
      check(
        'https://crm.example.com/u',
        "{ sub: 'mc123' }",
        auth("https://{{setting 'sub'}}.auth.example.com/token"),
      ),
    ).toEqual([]);
    expect(
      check('https://crm.example.com/u', '{}', auth("https://{{default source 'auth.example.com'}}/token")),
    ).toEqual([
      expect.objectContaining({
        field: 'request.auth.tokenUrl',
        reason: expect.stringMatching(/the host must be written out/),
      }),
    ]);
  });
});
