import { describe, expect, it } from 'vitest';
import { checkUnsubscribeBody } from '../../src/api/unsubscribe-body.js';

describe('checkUnsubscribeBody', () => {
  it('trims the email and keeps the optional fields', () => {
    expect(
      checkUnsubscribeBody({
        email: ' a@example.com\n',
        campaign: 'c1',
        source: 'landing',
        occurredAt: '2026-11-23T10:00:00+01:00',
      }),
    ).toEqual({
      ok: true,
      body: {
        email: 'a@example.com',
        campaign: 'c1',
        source: 'landing',
        occurredAt: '2026-11-23T10:00:00+01:00',
        attributes: {},
      },
    });
  });
  it('names every bad field at once', () => {
    const result = checkUnsubscribeBody({
      email: 'nope',
      campaign: 7,
      occurredAt: 'today',
      attributes: ['x'],
    });
    expect(result.ok).toBe(false);
    expect(Object.keys((result as { fields: object }).fields).sort()).toEqual([
      'attributes',
      'campaign',
      'email',
      'occurredAt',
    ]);
  });
  it('accepts exactly 254 characters and refuses 255', () => {
    const at = (n: number) => `${'a'.repeat(64)}@${'b'.repeat(n - 64 - 1 - 4)}.com`;
    expect(at(254)).toHaveLength(254);
    expect(checkUnsubscribeBody({ email: at(254) }).ok).toBe(true);
    expect(checkUnsubscribeBody({ email: at(255) })).toEqual({
      ok: false,
      fields: { email: 'must be at most 254 characters' },
    });
  });
  it('bounds attributes', () => {
    const many = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v']));
    expect(checkUnsubscribeBody({ email: 'a@example.com', attributes: many }).ok).toBe(false);
    expect(checkUnsubscribeBody({ email: 'a@example.com', attributes: { k: 'v'.repeat(1_025) } }).ok).toBe(
      false,
    );
  });
});
