import { describe, expect, it } from 'vitest';
import { parseConnectionFile } from '../../src/config/load-connections.js';

const file = (body: string, top = '') => `id: acme
account: acme
name: Acme
${top}settings: { listId: l-1 }
request:
  url: https://crm.example.com/unsubscribe
  body: { json: { value: ${JSON.stringify(body)} } }
`;
const reasons = (text: string) =>
  parseConnectionFile(text, 'acme.yaml').issues.map((i) => `${i.field}: ${i.reason}`);

describe('validate says what is expected and suggests the nearest name', () => {
  it("campaigns: all says to write '*' or a list of campaign ids", () => {
    expect(reasons(file('{{email}}', 'campaigns: all\n'))).toEqual([
      expect.stringMatching(
        /^campaigns: expected '\*' \(every campaign of the account\) or a list of campaign ids/,
      ),
    ]);
    // A list with a bad id still says what is wrong with that id.
    expect(reasons(file('{{email}}', 'campaigns: [Spring!]\n'))).toEqual([
      expect.stringMatching(/^campaigns\[0\]: use 1-63 lowercase letters/),
    ]);
  });

  it.each([
    ['{{emial}}', 'unknown variable "emial" (line 1, column 3); did you mean "email"?'],
    ['{{campain}}', 'did you mean "campaign"?'],
    ['{{settings.listid}}', 'did you mean "listId"?'],
    ['{{lowercse email}}', 'unknown helper "lowercse"; did you mean "lowercase"?'],
    ["{{setting 'lstId'}}", 'unknown setting "lstId"; its settings are listId; did you mean "listId"?'],
  ])('%s', (body, expected) => {
    expect(reasons(file(body))).toEqual([expect.stringContaining(expected)]);
  });

  it('suggests the nearest field of the same object for an unknown field', () => {
    expect(reasons(file('{{email}}', 'retyr: { attempts: 3 }\n'))).toEqual([
      'retyr: unknown field; did you mean "retry"?',
    ]);
    const methd = `id: acme\naccount: acme\nname: Acme\nrequest:\n  url: https://crm.example.com/u\n  methd: POST\n  body: { json: { email: "{{email}}" } }\n`;
    expect(reasons(methd)).toEqual(['request.methd: unknown field; did you mean "method"?']);
    const auth = `id: acme\naccount: acme\nname: Acme\nrequest:\n  url: https://crm.example.com/u\n  auth: { type: bearer, tokn: x }\n`;
    expect(reasons(auth)).toContain('request.auth.tokn: unknown field; did you mean "token"?');
    expect(reasons(file('{{email}}', 'zzzzzz: 1\n'))).toEqual(['zzzzzz: unknown field (check the spelling)']);
  });
});
