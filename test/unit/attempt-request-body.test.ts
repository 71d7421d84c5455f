import { describe, expect, it } from 'vitest';
import type { RenderedRequest, SendOutcome, Verdict } from '../../src/domain/delivery.js';
import { REQUEST_BODY_KEPT, attemptFields, sharedRequest } from '../../src/queue/attempt-fields.js';

const outcome: SendOutcome = {
  kind: 'response',
  status: 200,
  headers: {},
  body: '{}',
  bodyTruncated: false,
  durationMs: 3,
};
const verdict: Verdict = { verdict: 'success', rule: 'default', reason: 'status 200' };

describe('the request body an attempt record keeps', () => {
  it('is redacted and cut at 4 KiB, marked truncated', () => {
    const request: RenderedRequest = {
      method: 'POST',
      url: 'https://crm.example/v1',
      headers: { authorization: 'Bearer k3y' },
      body: JSON.stringify({ key: 'k3y', pad: 'x'.repeat(10_000) }),
      secrets: ['k3y'],
    };
    const fields = attemptFields(request, outcome, verdict);
    expect(fields.request!.body!.length).toBe(REQUEST_BODY_KEPT);
    expect(fields.request!.body).toMatch(/^\{"key":"\[redacted\]","pad":"xxx/);
    expect(fields.request!.bodyTruncated).toBe(true);
  });

  it("in a batch, is each delivery's own item; the shared body has none", () => {
    const request: RenderedRequest = {
      method: 'POST',
      url: 'https://crm.example/v1',
      headers: {},
      body: '{"emails":["a@x.io","b@x.io"]}',
      secrets: [],
      batchBody: { items: ['a@x.io', 'b@x.io'], shared: '{"emails":["$each: 2 items"]}' },
    };
    const batch = { id: 'request-1', size: 2 };
    expect(attemptFields(request, outcome, verdict, batch, 1)).toMatchObject({ requestItem: '"b@x.io"' });
    expect(attemptFields(request, outcome, verdict, batch, 1).request!.body).toBeUndefined();
    expect(sharedRequest(request).body).toBe('{"emails":["$each: 2 items"]}');
  });
});
