import { describe, expect, it } from 'vitest';
import { parseConnectionFile } from '../../src/config/load-connections.js';

const fileWith = (headers: string, auth = '') => `id: acme
account: acme
name: Acme
request:
  url: https://crm.example.com/unsubscribe
  headers: ${headers}
${auth}  body: { json: { email: "{{email}}" } }
`;
const none = { get: () => 'set' };

describe('validate warns about header templates that write free text', () => {
  it.each([
    ['{ X-Email: "{{email}}" }', 'request.headers.X-Email', 'email'],
    ['{ X-Campaign: "c={{default campaign \'none\'}}" }', 'request.headers.X-Campaign', 'campaign'],
    ['{ X-Plan: "{{lowercase attributes.plan}}" }', 'request.headers.X-Plan', 'attributes.plan'],
    ['{ X-Source: "{{#if source}}{{source}}{{/if}}" }', 'request.headers.X-Source', 'source'],
    ['{ X-Who: "{{@root.email}}" }', 'request.headers.X-Who', 'email'],
  ])('%s', (headers, field, variable) => {
    const { connection, warnings } = parseConnectionFile(fileWith(headers), 'acme.yaml', { secrets: none });
    expect(connection).toBeDefined();
    expect(warnings).toEqual([
      {
        connection: 'acme',
        kind: 'free_text_header',
        file: 'acme.yaml',
        line: 6,
        field,
        reason: expect.stringContaining(`{{${variable}}} goes into a header as it is`),
      },
    ]);
  });

  it('says nothing when the value is encoded, only tested, or not free text', () => {
    for (const headers of [
      '{ X-Email: "{{urlencode email}}" }',
      '{ X-Hash: "{{sha256 (lowercase email)}}" }',
      '{ X-B64: "{{base64 email}}", X-Md5: "{{md5 email}}" }',
      '{ X-Has: "{{#if campaign}}yes{{else}}no{{/if}}" }',
      '{ X-Is: "{{eq source \'api\'}}" }',
      '{ X-Id: "{{id}}-{{attempt}}", X-Account: "{{account}}" }',
    ]) {
      const { warnings, issues } = parseConnectionFile(fileWith(headers), 'acme.yaml', { secrets: none });
      expect(issues, headers).toEqual([]);
      expect(warnings, headers).toEqual([]);
    }
  });

  it('covers the auth header values too (api_key value)', () => {
    const { warnings } = parseConnectionFile(
      fileWith('{}', '  auth: { type: api_key, header: X-Key, value: "{{email}}" }\n'),
      'acme.yaml',
      { secrets: none },
    );
    expect(warnings).toMatchObject([{ field: 'request.auth.value', kind: 'free_text_header' }]);
  });
});

describe('validate warns about referenced secrets that are not set', () => {
  it('names connection, field and secret, once per use', () => {
    const { warnings } = parseConnectionFile(
      fileWith(
        '{ X-Key: "{{secret \'ACME_KEY\'}}" }',
        '  auth: { type: bearer, token: "{{secret \'ACME_TOKEN\'}}" }\n',
      ),
      'acme.yaml',
      { secrets: { get: (name) => (name === 'ACME_KEY' ? 'k' : undefined) } },
    );
    expect(warnings).toEqual([
      {
        connection: 'acme',
        kind: 'secret_not_set',
        secret: 'ACME_TOKEN',
        file: 'acme.yaml',
        line: 7,
        field: 'request.auth.token',
        reason: expect.stringMatching(/^secret ACME_TOKEN is not set .*connection acme/),
      },
    ]);
  });
});
