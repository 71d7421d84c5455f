import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConnections } from '../../src/config/load-connections.js';
import { startTestEngine, type TestEngine } from '../helpers/engine.js';
import { uniquePrefix } from '../helpers/redis.js';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
let engine: TestEngine;
let small: TestEngine;

const applyBody = async () => ({
  connections: (await loadConnections('connections')).map((loaded) => loaded.connection),
  prune: false,
});
const apply = (target: TestEngine, body: unknown) =>
  fetch(`${target.url}/admin/v1/apply`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

beforeAll(async () => {
  engine = await startTestEngine(uniquePrefix('api-body-limits'), []);
  small = await startTestEngine(uniquePrefix('api-body-limits-small'), [], { ADMIN_BODY_LIMIT: '20000' });
});
afterAll(async () => {
  await engine?.close();
  await small?.close();
});

describe('body limits per route', () => {
  it('applies every shipped connection (more than 16 KiB) through the admin API', async () => {
    const body = await applyBody();
    expect(JSON.stringify(body).length).toBeGreaterThan(16 * 1024);
    const response = await apply(engine, body);
    expect(response.status).toBe(200);
    const diff = (await response.json()) as { created: unknown[] };
    expect(diff.created).toHaveLength(body.connections.length);
  });

  it('answers an oversized ingest body with 413 naming the limit, the route and what to do', async () => {
    const response = await engine.unsubscribe('acme', { email: 'a@example.com', source: 'x'.repeat(17_000) });
    expect(response.status).toBe(413);
    expect(response.body).toEqual({
      error: 'payload_too_large',
      message:
        'the body is over the 16384-byte (16 KiB) limit of POST /v1/unsubscribes; send one unsubscribe per request, with its attributes under 16 KiB',
    });
  });

  it('takes the admin limit from ADMIN_BODY_LIMIT and says how to get under it', async () => {
    const response = await apply(small, await applyBody());
    expect(response.status).toBe(413);
    expect(await response.json()).toEqual({
      error: 'payload_too_large',
      message:
        'the body is over the 20000-byte limit of POST /admin/v1/apply; split the apply into smaller sets of connections, or raise ADMIN_BODY_LIMIT',
    });
  });
});
