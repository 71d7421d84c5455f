import { describe, expect, it } from 'vitest';
import { connectionSchema } from '../../src/config/connection-schema.js';
import type { RenderedRequest } from '../../src/domain/delivery.js';
import { redactRequest, redactRequestLine } from '../../src/templates/redact.js';
import { checkedUrl, secretVariants } from '../../src/templates/render-core.js';
import { compileConnection, renderRequest, templateContext } from '../../src/templates/render-request.js';

const request = (overrides: Partial<RenderedRequest>): RenderedRequest => ({
  method: 'POST',
  url: 'https://api.example/v1',
  headers: {},
  secrets: [],
  ...overrides,
});

describe('redactRequest', () => {
  it('replaces every occurrence of every secret in URL, headers and body', () => {
    const redacted = redactRequest(
      request({
        url: 'https://api.example/v1/k3y?again=k3y',
        headers: { 'x-trace': 'k3y-k3y', accept: 'application/json' },
        body: '{"a":"k3y","b":"k3y"}',
        secrets: ['k3y'],
      }),
    );
    expect(redacted).toEqual({
      method: 'POST',
      url: 'https://api.example/v1/[redacted]?again=[redacted]',
      headers: { 'x-trace': '[redacted]-[redacted]', accept: 'application/json' },
      body: '{"a":"[redacted]","b":"[redacted]"}',
    });
  });

  it('replaces longer secrets first, so no tail of a secret survives', () => {
    const redacted = redactRequest(request({ body: 'abcd-abcdefgh', secrets: ['abcd', 'abcdefgh', ''] }));
    expect(redacted.body).toBe('[redacted]-[redacted]');
  });

  it('blanks credential headers whatever their value', () => {
    const redacted = redactRequest(
      request({
        headers: {
          authorization: 'Basic Zm9vOmJhcg==',
          'proxy-authorization': 'x',
          cookie: 'sid=1',
          'x-api-key': 'k',
          'api-key': 'k',
          'x-auth-token': 't',
          'klaviyo-api-key': 'k',
          'content-type': 'application/json',
        },
      }),
    );
    expect(redacted.headers).toEqual({
      authorization: '[redacted]',
      'proxy-authorization': '[redacted]',
      cookie: '[redacted]',
      'x-api-key': '[redacted]',
      'api-key': '[redacted]',
      'x-auth-token': '[redacted]',
      'klaviyo-api-key': '[redacted]',
      'content-type': 'application/json',
    });
  });

  it('removes the password from URL userinfo and keeps the user', () => {
    expect(redactRequest(request({ url: 'https://bob:hunter2@api.example/x?p=1' })).url).toBe(
      'https://bob:[redacted]@api.example/x?p=1',
    );
    expect(redactRequest(request({ url: 'https://bob@api.example/x' })).url).toBe(
      'https://bob@api.example/x',
    );
  });

  it('omits the body when there is none', () => {
    expect(redactRequest(request({}))).toEqual({
      method: 'POST',
      url: 'https://api.example/v1',
      headers: {},
    });
  });
});

describe('what is worked out once and given again', () => {
  it('gives the last redacted request line again only for the same method, URL, headers and secrets', () => {
    const secrets = ['k3y'];
    const first = redactRequestLine(request({ headers: { 'x-trace': 'k3y-1' }, secrets }));
    expect(redactRequestLine(request({ headers: { 'x-trace': 'k3y-1' }, secrets }))).toBe(first);
    // Anything that differs is redacted afresh, never answered with the last one.
    expect(redactRequestLine(request({ headers: { 'x-trace': 'k3y-2' }, secrets })).headers).toEqual({
      'x-trace': '[redacted]-2',
    });
    expect(
      redactRequestLine(request({ headers: { 'x-trace': 'k3y-2', extra: 'k3y' }, secrets })).headers,
    ).toEqual({ 'x-trace': '[redacted]-2', extra: '[redacted]' });
    expect(
      redactRequestLine(request({ headers: { 'x-trace': 'k3y-2', extra: 'k3y' }, secrets: ['2'] })).headers,
    ).toEqual({ 'x-trace': 'k3y-[redacted]', extra: 'k3y' });
    expect(redactRequestLine(request({ url: 'https://api.example/k3y', secrets })).url).toBe(
      'https://api.example/[redacted]',
    );
    expect(redactRequestLine(request({ method: 'PUT', secrets })).method).toBe('PUT');
  });

  it('works out the variants of the same secrets once, and of other secrets afresh', () => {
    const one = secretVariants(['a b&c']);
    expect(secretVariants(new Set(['a b&c']))).toBe(one);
    expect(one).toEqual(expect.arrayContaining(['a b&c', 'a%20b%26c', 'a+b%26c', 'a b&amp;c']));
    expect(secretVariants(['a b&d'])).toEqual(expect.arrayContaining(['a b&d', 'a%20b%26d']));
  });

  it('still refuses a bad URL after a good one', () => {
    expect(checkedUrl('https://api.example/v1')).toBe('https://api.example/v1');
    expect(checkedUrl('https://api.example/v1')).toBe('https://api.example/v1');
    expect(() => checkedUrl('https://api.example/v1 ')).toThrow(/spaces or control/);
    expect(() => checkedUrl('ftp://api.example/v1')).toThrow(/http or https/);
  });
});

describe('rendered then redacted', () => {
  it('never shows a secret, raw, JSON-escaped, percent-encoded or derived', () => {
    const secret = 'p@ss/"w+rd"\\x';
    const conn = connectionSchema.parse({
      id: 'acme-crm',
      account: 'acme',
      name: 'Acme',
      request: {
        url: "https://api.example/v1/{{secret 'KEY'}}/members?k={{secret 'KEY'}}",
        auth: { type: 'api_key', header: 'X-Custom', value: "{{secret 'KEY'}}" },
        headers: { 'X-Echo': "key={{secret 'KEY'}}", 'X-Encoded': "{{base64 (secret 'KEY')}}" },
        body: {
          json: {
            key: "{{secret 'KEY'}}",
            typed: "{{secret 'KEY'}}",
            list: ["k:{{lowercase (secret 'KEY')}}"],
          },
        },
      },
    });
    const rendered = renderRequest(
      compileConnection(conn),
      templateContext(
        {
          id: '6f1c7d9e-8a7b-4c2d-9e0f-1a2b3c4d5e6f',
          account: 'acme',
          email: 'a@b.example',
          receivedAt: 'now',
          attributes: {},
        },
        conn,
        1,
        { sandboxUrl: 'http://127.0.0.1:1' },
      ),
      { get: () => secret },
    );
    // The secret is really in there before redaction, in several spellings.
    expect(rendered.url).toBe(
      'https://api.example/v1/p@ss%2F%22w%2Brd%22%5Cx/members?k=p@ss%2F%22w%2Brd%22%5Cx',
    );
    expect(rendered.body).toContain(JSON.stringify(secret));

    const redacted = redactRequest(rendered);
    const shown = JSON.stringify(redacted);
    for (const spelling of [
      secret,
      JSON.stringify(secret).slice(1, -1),
      encodeURIComponent(secret),
      'p@ss%2F%22w%2Brd%22%5Cx',
      Buffer.from(secret).toString('base64'),
      secret.toLowerCase(),
      'p@ss',
    ]) {
      expect(shown).not.toContain(spelling);
    }
    expect(redacted).toEqual({
      method: 'POST',
      url: 'https://api.example/v1/[redacted]/members?k=[redacted]',
      headers: {
        'x-echo': 'key=[redacted]',
        'x-encoded': '[redacted]',
        'x-custom': '[redacted]',
        'content-type': 'application/json',
      },
      body: '{"key":"[redacted]","typed":"[redacted]","list":["k:[redacted]"]}',
    });
  });
});
