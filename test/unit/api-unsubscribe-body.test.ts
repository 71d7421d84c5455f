import { describe, expect, it } from 'vitest';
import { checkUnsubscribeBody, isEmailAddress } from '../../src/api/unsubscribe-body.js';

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
    // 64-character local part, then a domain of 60-character labels ending in .com.
    const at = (n: number) => {
      let domain = '.com';
      while (65 + domain.length < n)
        domain = `${'b'.repeat(Math.min(60, n - 65 - domain.length - 1))}.${domain.replace(/^\./, '')}`;
      return `${'a'.repeat(64)}@${domain}`;
    };
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

describe('isEmailAddress', () => {
  it.each([
    'jane@example.com',
    "o'brien+news@example.com",
    'UPPER.Case@Example.COM',
    'zoë.ñandú@example.com',
    'user@bücher.de',
    '用户@例子.广告',
  ])('accepts %s', (email) => expect(isEmailAddress(email)).toBe(true));
  it.each([
    'a\u0000b@example.com',
    'a\u0007\u001b[31m@example.com',
    'a\ud800@example.com',
    'a\u202e@example.com',
    '<script>alert(1)</script>@x.com',
    'a@localhost',
    'a..b@example.com',
    '.a@example.com',
    'a@example..com',
    'a@-example.com',
    'a@example.123',
    'Jane <jane@example.com>',
    'a@example.com, b@example.com',
    '"a b"@example.com',
    'a@[127.0.0.1]',
    `${'a'.repeat(65)}@example.com`,
  ])('refuses %j', (email) => expect(isEmailAddress(email)).toBe(false));

  it('refuses control characters in campaign and source', () => {
    expect(
      checkUnsubscribeBody({
        email: 'a@example.com',
        campaign: 'spring\r\nX-Injected: 1',
        source: 'a\u0000',
      }),
    ).toEqual({
      ok: false,
      fields: {
        campaign: 'must not contain control characters',
        source: 'must not contain control characters',
      },
    });
  });
});
