import { describe, expect, it } from 'vitest';
import { connectionSchema, type ConnectionInput } from '../../src/config/connection-schema.js';
import { Batcher, GroupNotSent, batchCap } from '../../src/queue/batcher.js';
import { itemNotRendered } from '../../src/queue/delivery-outcome.js';
import { TemplateError } from '../../src/errors.js';
import {
  checkTemplates,
  compileConnection,
  renderRequest,
  templateContext,
  type SecretSource,
} from '../../src/templates/render-request.js';

const secrets: SecretSource = { get: (name) => (name === 'KEY' ? 'sk-batch-secret' : undefined) };
const engine = { sandboxUrl: 'http://127.0.0.1:8080/sandbox/crm' };

function batched(overrides: Partial<ConnectionInput> = {}) {
  return connectionSchema.safeParse({
    id: 'acme-batch',
    account: 'acme',
    name: 'Acme batch',
    settings: { group: 7 },
    batch: { maxSize: 100, maxWait: '500ms' },
    request: {
      url: 'https://api.crm.example/v3/groups/{{settings.group}}/suppressions',
      auth: { type: 'bearer', token: "{{secret 'KEY'}}" },
      body: { json: { recipient_emails: [{ $each: '{{email}}' }], count: '{{batch.size}}' } },
    },
    ...overrides,
  });
}

const contextOf = (email: string, campaign?: string) =>
  templateContext(
    {
      id: `00000000-0000-4000-8000-00000000000${email.length % 10}`,
      account: 'acme',
      email,
      ...(campaign ? { campaign } : {}),
      receivedAt: '2026-12-01T10:00:00.000Z',
      attributes: {},
    },
    batched().data!,
    1,
    engine,
  );

describe('batched connection files', () => {
  it('render one request listing every unsubscribe with $each, the rest from the batch', () => {
    const parsed = batched();
    expect(parsed.success).toBe(true);
    const connection = parsed.data!;
    expect(checkTemplates(connection)).toEqual([]);
    const items = ['a@example.com', "o'brien@example.com", 'c"q@example.com'].map((email) =>
      contextOf(email),
    );
    const request = renderRequest(
      compileConnection(connection),
      items[0]!,
      secrets,
      undefined,
      undefined,
      items,
    );
    expect(request.url).toBe('https://api.crm.example/v3/groups/7/suppressions');
    expect(JSON.parse(request.body!)).toEqual({
      recipient_emails: ['a@example.com', "o'brien@example.com", 'c"q@example.com'],
      count: 3,
    });
    expect(request.headers.authorization).toBe('Bearer sk-batch-secret');
  });

  it('expand $each into objects, next to fixed list items', () => {
    const connection = batched({
      request: {
        url: 'https://a.klaviyo.example/api/profile-suppression-bulk-create-jobs',
        body: {
          json: {
            data: {
              type: 'job',
              profiles: [
                'fixed',
                { $each: { type: 'profile', email: '{{email}}', campaign: "{{default campaign 'none'}}" } },
              ],
            },
          },
        },
      },
    }).data!;
    const items = [contextOf('a@example.com', 'spring'), contextOf('b@example.com')];
    const body = JSON.parse(
      renderRequest(compileConnection(connection), items[0]!, secrets, undefined, undefined, items).body!,
    );
    expect(body.data.profiles).toEqual([
      'fixed',
      { type: 'profile', email: 'a@example.com', campaign: 'spring' },
      { type: 'profile', email: 'b@example.com', campaign: 'none' },
    ]);
  });

  it('refuse an unsubscribe field outside $each, naming the field', () => {
    const connection = batched({
      request: {
        url: 'https://api.crm.example/v3/suppressions/{{email}}',
        body: { json: { emails: [{ $each: '{{email}}' }] } },
      },
    }).data!;
    const issues = checkTemplates(connection);
    expect(issues.map((issue) => issue.field)).toEqual(['request.url']);
    expect(issues[0]!.reason).toMatch(/email/);
  });

  it('say what is missing when batch and $each do not come together', () => {
    const noEach = batched({
      request: { url: 'https://x.example/', body: { json: { email: '{{email}}' } } },
    });
    expect(noEach.success).toBe(false);
    expect(noEach.error!.issues[0]).toMatchObject({ path: ['request', 'body'] });
    expect(noEach.error!.issues[0]!.message).toContain('$each');
    const noBatch = batched({ batch: undefined });
    expect(noBatch.success).toBe(false);
    expect(noBatch.error!.issues[0]).toMatchObject({ path: ['batch'] });
    const notInList = batched({
      request: { url: 'https://x.example/', body: { json: { emails: { $each: '{{email}}' } } } },
    }).data!;
    expect(checkTemplates(notInList)).toEqual([
      expect.objectContaining({
        field: 'request.body.json.emails.$each',
        reason: expect.stringContaining('inside a list'),
      }),
    ]);
  });
});

describe('Batcher', () => {
  type Timer = ReturnType<typeof setTimeout>;
  function manualTimers() {
    const pending = new Map<number, () => void>();
    let next = 0;
    return {
      timers: {
        set: (fn: () => void) => {
          pending.set(++next, fn);
          return next as unknown as Timer;
        },
        clear: (timer: Timer) => void pending.delete(timer as unknown as number),
      },
      fire: () => {
        for (const [id, fn] of [...pending]) {
          pending.delete(id);
          fn();
        }
      },
    };
  }

  it('sends a full group at once, each entry learning its place', async () => {
    const sent: string[][] = [];
    const { timers } = manualTimers();
    const batcher = new Batcher<string, string>(async (entries) => {
      sent.push(entries);
      return `request ${sent.length}`;
    }, timers);
    const results = await Promise.all(['a', 'b', 'c'].map((e) => batcher.submit('k', e, 3, 1000)));
    expect(sent).toEqual([['a', 'b', 'c']]);
    expect(results.map((r) => [r.result, r.index, r.size])).toEqual([
      ['request 1', 0, 3],
      ['request 1', 1, 3],
      ['request 1', 2, 3],
    ]);
  });

  it('sends a partial group after maxWait, and keeps groups apart by key', async () => {
    const sent: string[][] = [];
    const { timers, fire } = manualTimers();
    const batcher = new Batcher<string, number>(async (entries) => sent.push(entries), timers);
    const a = batcher.submit('v1', 'a', 10, 500);
    const b = batcher.submit('v2', 'b', 10, 500);
    expect(batcher.waiting).toBe(2);
    fire();
    await Promise.all([a, b]);
    expect(sent).toEqual([['a'], ['b']]);
    expect(batcher.waiting).toBe(0);
  });

  it('fails every entry of a group whose request could not be sent', async () => {
    const batcher = new Batcher<string, never>(async () => {
      throw new Error('render failed');
    });
    const results = await Promise.allSettled(['a', 'b'].map((e) => batcher.submit('k', e, 2, 1000)));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    // Each says why, and how many were in the request, so a render failure can be split.
    for (const r of results) {
      const reason = (r as PromiseRejectedResult).reason as GroupNotSent;
      expect(reason).toBeInstanceOf(GroupNotSent);
      expect(reason).toMatchObject({ size: 2, cause: new Error('render failed') });
    }
  });

  it('splits a batch that did not render only for a field inside $each, which one unsubscribe can fail', () => {
    const item = new TemplateError('sg', 'request.body.json.emails[0].$each.at', 'date: not a date');
    const secret = new TemplateError('sg', 'request.headers.Authorization', "secret 'SG_KEY' is not set");
    expect(itemNotRendered(item)).toBe(true);
    expect(itemNotRendered(secret)).toBe(false);
    expect(itemNotRendered(new Error('request.body.json.emails[0].$each.at'))).toBe(false);
  });

  it('halves the batch on each retry and after a split, never below one', () => {
    expect([0, 1, 2, 3, 10].map((made) => batchCap(100, made))).toEqual([100, 50, 25, 12, 1]);
    expect(batchCap(100, 0, 8)).toBe(8);
    expect(batchCap(100, 1, 80)).toBe(50);
  });
});
