import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { startTestEngine, type TestEngine } from '../helpers/engine.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

/**
 * The connection language end to end: each connection belongs to its own account so each test
 * drives exactly one, through the real engine, against loopback CRMs.
 */
process.env.LANG_CLIENT_SECRET = 'oauth-client-secret-7f1e';
process.env.LANG_HMAC_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
process.env.LANG_MG_KEY = 'mailgun-key-91a2';

let engine: TestEngine;
let crm: FakeCrm;
let auth: FakeCrm;
let tokensIssued = 0;
const behaviour: Record<
  string,
  (i: number) => { status: number; body?: string; headers?: Record<string, string> }
> = {};

const base = (
  account: string,
  request: ConnectionInput['request'],
  extra: Partial<ConnectionInput> = {},
): ConnectionInput => ({
  id: account,
  account,
  name: account,
  campaigns: '*',
  request,
  retry: { attempts: 3, backoff: 'fixed', delay: '50ms', jitter: false },
  ...extra,
});

beforeAll(async () => {
  auth = await startFakeCrm(() => {
    tokensIssued += 1;
    return {
      status: 200,
      body: JSON.stringify({ access_token: `token-${tokensIssued}`, expires_in: 3600, token_type: 'Bearer' }),
    };
  });
  const seen: Record<string, number> = {};
  crm = await startFakeCrm((request) => {
    const account = request.path.split('/')[1]!;
    seen[account] = (seen[account] ?? -1) + 1;
    return behaviour[account]?.(seen[account]) ?? { status: 200, body: '{}' };
  });
  engine = await startTestEngine(uniquePrefix('language'), [
    base('oauth', {
      url: `${crm.url}/oauth/{{email}}`,
      auth: {
        type: 'oauth2_client_credentials',
        tokenUrl: `${auth.url}/token`,
        clientId: 'client-1',
        clientSecret: "{{secret 'LANG_CLIENT_SECRET'}}",
        scope: 'unsubscribe',
      },
      body: { json: { email: '{{email}}' } },
    }),
    base(
      'already',
      { url: `${crm.url}/already`, body: { json: { email: '{{email}}' } } },
      {
        response: {
          rules: [
            { when: { status: 400, bodyContains: 'already unsubscribed' }, then: 'success_already_done' },
          ],
        },
      },
    ),
    base(
      'throttled',
      { url: `${crm.url}/throttled`, body: { json: { email: '{{email}}' } } },
      {
        retry: { attempts: 1, backoff: 'fixed', delay: '50ms', jitter: false },
      },
    ),
    base(
      'deadline',
      { url: `${crm.url}/deadline`, body: { json: { email: '{{email}}' } } },
      {
        retry: { deadline: '2s', warnBefore: '1500ms', backoff: 'fixed', delay: '200ms', jitter: false },
      },
    ),
    base('signed', {
      url: `${crm.url}/signed`,
      auth: { type: 'hmac', scheme: 'standard_webhooks', secret: "{{secret 'LANG_HMAC_SECRET'}}" },
      body: { json: { email: '{{email}}' } },
    }),
    base('mailgunlike', {
      url: `${crm.url}/mailgunlike/unsubscribes`,
      auth: { type: 'basic', username: 'api', password: "{{secret 'LANG_MG_KEY'}}" },
      body: { form: { address: '{{email}}', tag: ['*', 'newsletter'] } },
    }),
    base(
      'peritem',
      { url: `${crm.url}/peritem`, body: { json: { emails: ['{{email}}'] } } },
      {
        response: {
          rules: [
            {
              when: { status: 200, json: { path: '$.invalidEmails', contains: '{{email}}' } },
              then: 'fail',
              reason: 'the CRM rejected this address',
            },
            { when: { status: 200, json: { path: '$.successCount', equals: 1 } }, then: 'success' },
          ],
        },
      },
    ),
  ]);
});
afterAll(async () => {
  await engine?.close();
  await crm.close();
  await auth.close();
});

async function deliver(account: string, email: string) {
  const { status, body } = await engine.unsubscribe(account, { email });
  expect(status).toBe(201);
  return `${body.id as string}:${account}`;
}
const settled = (id: string, status: 'succeeded' | 'failed') =>
  eventually(`${id} ${status}`, async () => {
    const detail = await engine.records.get(id);
    return detail.status === status ? detail : undefined;
  });
const at = (account: string) => crm.received.filter((r) => r.path.startsWith(`/${account}`));

describe('OAuth2 client credentials', () => {
  it('fetches one token for many deliveries and sends it as a bearer token', async () => {
    const ids = await Promise.all(
      ['a@example.com', 'b@example.com', 'c@example.com'].map((e) => deliver('oauth', e)),
    );
    for (const id of ids) await settled(id, 'succeeded');
    expect(tokensIssued).toBe(1);
    expect(auth.received[0]!.body).toBe(
      'grant_type=client_credentials&client_id=client-1&client_secret=oauth-client-secret-7f1e&scope=unsubscribe',
    );
    expect(at('oauth').map((r) => r.headers.authorization)).toEqual([
      'Bearer token-1',
      'Bearer token-1',
      'Bearer token-1',
    ]);
  });

  it('refreshes a refused token once and resends without spending an attempt', async () => {
    behaviour.oauth = (i) =>
      i === 3 ? { status: 401, body: '{"error":"token expired"}' } : { status: 200, body: '{}' };
    const id = await deliver('oauth', 'd@example.com');
    const detail = await settled(id, 'succeeded');
    expect(tokensIssued).toBe(2);
    expect(
      at('oauth')
        .slice(-2)
        .map((r) => r.headers.authorization),
    ).toEqual(['Bearer token-1', 'Bearer token-2']);
    expect(detail.attemptsMade).toBe(1);
    expect(detail.attempts.map((a) => [a.status, a.verdict])).toEqual([
      [401, 'refresh_auth'],
      [200, 'success'],
    ]);
    expect(JSON.stringify(detail)).not.toMatch(/token-[12]|oauth-client-secret/);
  });
});

describe('response rules and retry policy', () => {
  it('counts "already unsubscribed" as delivered', async () => {
    behaviour.already = () => ({
      status: 400,
      body: '{"message":"jane@example.com is already unsubscribed"}',
    });
    const detail = await settled(await deliver('already', 'jane@example.com'), 'succeeded');
    expect(detail.attempts[0]).toMatchObject({ status: 400, verdict: 'success_already_done' });
  });

  it('waits out a 429 without spending one of its attempts', async () => {
    behaviour.throttled = (i) =>
      i < 2 ? { status: 429, headers: { 'retry-after': '0' }, body: '{}' } : { status: 200, body: '{}' };
    const detail = await settled(await deliver('throttled', 'slow@example.com'), 'succeeded');
    // attempts: 1 in the policy, yet two throttled answers did not fail it.
    expect(detail.attempts.map((a) => a.verdict)).toEqual(['rate_limited', 'rate_limited', 'success']);
  });

  it('fails with DEADLINE_PASSED when the deadline runs out, flagging it as near first', async () => {
    behaviour.deadline = () => ({ status: 503, body: 'down' });
    const detail = await settled(await deliver('deadline', 'late@example.com'), 'failed');
    const last = detail.attempts.at(-1)!;
    expect(last).toMatchObject({ verdict: 'fail', errorCode: 'DEADLINE_PASSED' });
    expect(last.reason).toMatch(/^gave up: kept trying for 2s/);
    expect(detail.attempts.some((a) => a.deadlineNear)).toBe(true);
    expect(detail.failedReason).toMatch(/^DEADLINE_PASSED: /);
  });

  it('reads per-item results with a templated JSON match', async () => {
    behaviour.peritem = () => ({
      status: 200,
      body: '{"successCount":0,"failCount":1,"invalidEmails":["bad@example.com"]}',
    });
    const failed = await settled(await deliver('peritem', 'bad@example.com'), 'failed');
    expect(failed.attempts[0]).toMatchObject({
      verdict: 'fail',
      errorCode: 'RULE_FAIL',
      reason: 'the CRM rejected this address',
    });
    behaviour.peritem = () => ({ status: 200, body: '{"successCount":1,"failCount":0,"invalidEmails":[]}' });
    await settled(await deliver('peritem', 'good@example.com'), 'succeeded');
  });
});

describe('bodies and signing', () => {
  it('sends a form body with Basic auth', async () => {
    await settled(await deliver('mailgunlike', "o'brien+news@example.com"), 'succeeded');
    const [request] = at('mailgunlike');
    expect(request!.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(request!.body).toBe('address=o%27brien%2Bnews%40example.com&tag=*&tag=newsletter');
    expect(request!.headers.authorization).toBe(
      `Basic ${Buffer.from('api:mailgun-key-91a2').toString('base64')}`,
    );
  });

  it('signs the body the Standard Webhooks way', async () => {
    const id = await deliver('signed', 'signed@example.com');
    await settled(id, 'succeeded');
    const [request] = at('signed');
    const msgId = request!.headers['webhook-id'] as string;
    const timestamp = request!.headers['webhook-timestamp'] as string;
    const key = Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64');
    const expected = createHmac('sha256', key)
      .update(`${msgId}.${timestamp}.${request!.body}`)
      .digest('base64');
    expect(msgId).toBe(id.split(':')[0]);
    expect(request!.headers['webhook-signature']).toBe(`v1,${expected}`);
  });
});
