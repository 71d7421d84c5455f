import { describe, expect, it } from 'vitest';
import { connectionSchema } from '../../src/config/connection-schema.js';
import type { Unsubscribe } from '../../src/domain/unsubscribe.js';
import { createSender } from '../../src/http/sender.js';
import { healthOf } from '../../src/queue/delivery-health.js';
import { classify } from '../../src/rules/classify.js';
import { compileConnection, renderRequest, templateContext } from '../../src/templates/render-request.js';
import { templateError } from '../helpers/template-error.js';

// A request the HTTP client cannot build is this delivery's problem, never the CRM's (issue 18).
const unicode: Unsubscribe = {
  id: '6f1c7d9e-8a7b-4c2d-9e0f-1a2b3c4d5e6f',
  account: 'acme',
  email: 'jürgen.müller@例え.jp',
  campaign: 'été-☀',
  receivedAt: '2024-05-01T10:00:00.000Z',
  attributes: {},
};
const secrets = { get: (name: string) => ({ KEY: 'k3y' })[name] };
const engine = { sandboxUrl: 'http://127.0.0.1:8787' };

const connection = connectionSchema.parse({
  id: 'acme-crm',
  account: 'acme',
  name: 'Acme CRM',
  request: {
    url: 'https://api.crm.example/v1/suppressions',
    auth: { type: 'bearer', token: "{{secret 'KEY'}}" },
    headers: { 'X-Email': '{{email}}', 'X-Source': 'relay' },
    body: { json: { email: '{{email}}' } },
  },
});

describe('a header the HTTP client cannot send', () => {
  it('fails rendering as a template error naming the header field, without the value', () => {
    const error = templateError(() =>
      renderRequest(compileConnection(connection), templateContext(unicode, connection, 1, engine), secrets),
    );
    expect(error.code).toBe('TEMPLATE_ERROR');
    expect(error.field).toBe('request.headers.X-Email');
    expect(error.message).toContain('beyond Latin-1');
    expect(error.message).not.toContain('jürgen');
  });

  it('renders Latin-1 (obs-text) header values as the client sends them', () => {
    const latin = { ...unicode, email: 'jürgen@example.com' };
    const request = renderRequest(
      compileConnection(connection),
      templateContext(latin, connection, 1, engine),
      secrets,
    );
    expect(request.headers['x-email']).toBe('jürgen@example.com');
  });

  it('is refused by the sender before undici, as REQUEST_INVALID, which is neither retried nor the CRM down', async () => {
    const sender = createSender({ allowPrivateTargets: true });
    const outcome = await sender.send(
      {
        method: 'POST',
        url: 'http://127.0.0.1:9/never',
        headers: { 'x-email': 'a☃@example.com', authorization: 'Bearer k3y' },
        body: '{}',
        secrets: ['k3y'],
      },
      { timeouts: { connect: 1_000, headers: 1_000, body: 1_000 }, maxResponseBytes: 1_024 },
    );
    await sender.close();
    expect(outcome).toMatchObject({ kind: 'error', code: 'REQUEST_INVALID' });
    expect(outcome.kind === 'error' && outcome.message).toContain('header x-email');
    const verdict = classify([], outcome, Date.now());
    expect(verdict).toMatchObject({ verdict: 'fail', code: 'REQUEST_INVALID' });
    expect(healthOf(verdict, outcome)).toBe('neutral');
  });
});
