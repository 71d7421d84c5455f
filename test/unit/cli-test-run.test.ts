import { describe, expect, it } from 'vitest';
import { formatRun } from '../../src/cli/commands/testing.js';
import type { TestRun } from '../../src/testing/run-test.js';

const run: TestRun = {
  id: 'run-1',
  connectionId: 'acme-crm',
  connectionVersion: 2,
  at: '2026-12-06T04:00:00.000Z',
  dryRun: false,
  email: 'qa@example.com',
  request: { method: 'POST', url: 'https://crm.example/unsubscribe', headers: {} },
  response: { status: 200, headers: {}, body: '{}', bodyTruncated: false },
  verdict: 'success',
  rule: 1,
  reason: 'rule 1 (success) matched status 200',
  durationMs: 12,
};

describe('test output', () => {
  it('numbers the matching rule as its reason does', () => {
    const text = formatRun(run);
    expect(text).toContain('rule: 1\n');
    expect(text).toContain('verdict: success (rule 1 (success) matched status 200)');
    expect(text).not.toContain('#');
  });

  it('says when no rule matched', () => {
    expect(formatRun({ ...run, rule: 'default', reason: 'status 200' })).toContain(
      'rule: default (no rule matched)',
    );
  });
});
