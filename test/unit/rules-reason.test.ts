import { describe, expect, it } from 'vitest';
import { connectionSchema, type ConnectionInput } from '../../src/config/connection-schema.js';
import { sampleContext } from '../../src/templates/context.js';
import { checkReasonTemplates, itemResult, renderReason } from '../../src/templates/render-reason.js';
import { checkTemplates } from '../../src/templates/render-request.js';

function connection(rules: NonNullable<ConnectionInput['response']>['rules']) {
  return connectionSchema.parse({
    id: 'acme-crm',
    account: 'acme',
    name: 'Acme CRM',
    settings: { listId: 'news' },
    request: { url: 'https://api.crm.example/v1/suppressions' },
    response: { rules },
  });
}

describe('reason templates', () => {
  const c = connection([]);
  const context = { ...sampleContext(c), email: 'jane@example.com', campaign: 'spring' };

  it('render the answer and the delivery: status, parsed body, headers, email, campaign, settings', () => {
    const reason = renderReason(
      'CRM {{response.status}} for {{email}} ({{campaign}}, list {{settings.listId}}): {{response.body.errors.0.detail}} [{{response.headers.x-request-id}}]',
      context,
      {
        status: 400,
        headers: { 'x-request-id': 'r-1' },
        body: { errors: [{ detail: 'Invalid list' }] },
      },
      { index: 0, size: 1 },
      [],
      'rule 1 (fail) matched status 400',
    );
    expect(reason).toBe('CRM 400 for jane@example.com (spring, list news): Invalid list [r-1]');
  });

  it("show a batch item's own result: its place in a list as long as the batch, or the object naming its email", () => {
    const postmark = [
      { ErrorCode: 0, Message: 'OK', To: 'a@example.com' },
      { ErrorCode: 406, Message: 'Inactive recipient', To: 'jane@example.com' },
    ];
    expect(
      renderReason(
        'Postmark: {{response.item.Message}}',
        context,
        { status: 200, headers: {}, body: postmark },
        { index: 1, size: 2 },
        [],
        'x',
      ),
    ).toBe('Postmark: Inactive recipient');
    const listed = {
      results: [
        { email: 'other@example.com', error: 'a' },
        { email: 'JANE@example.com', error: 'b' },
      ],
    };
    expect(itemResult(listed, 'jane@example.com', { index: 0, size: 3 })).toEqual(listed.results[1]);
    expect(itemResult(listed, 'nobody@example.com', { index: 0, size: 3 })).toBeNull();
  });

  it('scrub secrets the CRM echoed back, and bound the text', () => {
    const reason = renderReason(
      '{{response.body.echo}}',
      context,
      { status: 401, headers: {}, body: { echo: `bad key sk_live_123 ${'x'.repeat(900)}` } },
      { index: 0, size: 1 },
      ['sk_live_123'],
      'x',
    );
    expect(reason).not.toContain('sk_live_123');
    expect(reason.length).toBeLessThanOrEqual(501);
  });

  it("fall back to the rule's own reason when the answer lacks a field", () => {
    const reason = renderReason(
      'Postmark: {{response.body.Message}}',
      context,
      { status: 500, headers: {}, body: 'not json' },
      { index: 0, size: 1 },
      [],
      'rule 2 (retry) matched status 500',
    );
    expect(reason).toMatch(/^rule 2 \(retry\) matched status 500 \(its reason did not render/);
  });

  it('are checked at validation: an unknown variable or helper is refused, response fields pass', () => {
    const issues = checkReasonTemplates(
      connection([
        { when: { status: 200 }, then: 'success', reason: 'ok {{response.body.anything.at.all}} {{email}}' },
        { when: { status: 400 }, then: 'fail', reason: 'bad {{response.body.error}} {{emial}}' },
        { when: { status: 401 }, then: 'fail', reason: 'bad {{shout email}}' },
      ]),
    );
    expect(issues.map((i) => i.field)).toEqual(['response.rules[1].reason', 'response.rules[2].reason']);
    expect(issues[0]!.reason).toContain('emial');
  });

  it('are part of checkTemplates (validate)', () => {
    const issues = checkTemplates(
      connection([{ when: { status: 400 }, then: 'fail', reason: 'bad {{emial}}' }]),
    );
    expect(issues).toContainEqual(expect.objectContaining({ field: 'response.rules[0].reason' }));
  });
});
