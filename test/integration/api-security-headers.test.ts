import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { uniquePrefix } from '../helpers/redis.js';

process.env.TEST_CRM_TOKEN ??= 'security-headers-crm-token';
const ADMIN_TOKEN = 'test-admin-token-0123456789';
const bearer = { authorization: `Bearer ${ADMIN_TOKEN}` };
let engine: TestEngine;

beforeAll(async () => {
  engine = await startTestEngine(uniquePrefix('api-security-headers'), [
    crmConnection('headers-crm', 'http://127.0.0.1:9'),
  ]);
});
afterAll(async () => {
  await engine?.close();
});

function expectCommonHeaders(response: Response): void {
  expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  expect(response.headers.get('x-frame-options')).toBe('DENY');
  expect(response.headers.get('referrer-policy')).toBe('no-referrer');
  expect(response.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
}

describe('security headers', () => {
  it('sends them on ingest answers, accepted or refused', async () => {
    const key = (await engine.apiKeys.create('acme')).key;
    for (const authorization of [key, 'wrong-key']) {
      const response = await fetch(`${engine.url}/v1/unsubscribes`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'a@example.com' }),
      });
      expect([201, 401]).toContain(response.status);
      expectCommonHeaders(response);
      expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
    }
  });

  it('sends them with Cache-Control: no-store on admin JSON, refused or not', async () => {
    for (const headers of [bearer, { authorization: 'Bearer wrong-token-0123456789' }]) {
      const response = await fetch(`${engine.url}/admin/v1/connections`, { headers });
      expect([200, 401]).toContain(response.status);
      expectCommonHeaders(response);
      expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(response.headers.get('cache-control')).toBe('no-store');
    }
  });

  it('gives the queue dashboard a policy that lets it load its own assets only', async () => {
    const page = await fetch(`${engine.url}/admin/queues`, { headers: bearer });
    expect(page.status).toBe(200);
    expectCommonHeaders(page);
    expect(page.headers.get('cache-control')).toBe('no-store');
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-eval');
    // Every script the page loads is its own (relative to its base path), so 'self' allows it.
    const html = await page.text();
    const scripts = [...html.matchAll(/<script[^>]* src="([^"]+)"/g)].map((m) => m[1]!);
    expect(scripts.length).toBeGreaterThan(0);
    for (const src of scripts) {
      expect(src).not.toMatch(/^https?:/);
      const asset = await fetch(`${engine.url}/admin/queues/${src}`, { headers: bearer });
      expect(asset.status).toBe(200);
    }
    const api = await fetch(`${engine.url}/admin/queues/api/queues`, { headers: bearer });
    expect(api.headers.get('cache-control')).toBe('no-store');
  });
});
