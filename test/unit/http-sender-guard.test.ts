import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RenderedRequest } from '../../src/domain/delivery.js';
import { createSender } from '../../src/http/sender.js';

const limits = { timeouts: { connect: 2_000, headers: 2_000, body: 2_000 }, maxResponseBytes: 1_024 };
const servers: http.Server[] = [];
const sockets = new Set<net.Socket>();
/** Requests and TCP connections per server: a refused target must see neither. */
const seen = new Map<http.Server, { connections: number; requests: number }>();
let port = 0;
let other = 0;
let otherServer: http.Server;
let mainServer: http.Server;

async function listen(body: string): Promise<[http.Server, number]> {
  const server = http.createServer((_req, res) => {
    seen.get(server)!.requests++;
    res.end(body);
  });
  seen.set(server, { connections: 0, requests: 0 });
  server.on('connection', (socket: net.Socket) => {
    seen.get(server)!.connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return [server, (server.address() as AddressInfo).port];
}

beforeAll(async () => {
  [mainServer, port] = await listen('main');
  [otherServer, other] = await listen('other');
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

function post(url: string): RenderedRequest {
  return { method: 'POST', url, headers: {}, body: 'x', secrets: [] };
}

describe('sender with the SSRF guard on', () => {
  const refusal = 'private, loopback or reserved address';

  it.each([
    ['127.0.0.1', () => `http://127.0.0.1:${port}/`, `refused to connect to 127.0.0.1: ${refusal}`],
    ['[::1]', () => `http://[::1]:${port}/`, `refused to connect to ::1: ${refusal}`],
    [
      '::ffff:127.0.0.1',
      () => `http://[::ffff:127.0.0.1]:${port}/`,
      `refused to connect to ::ffff:7f00:1: ${refusal}`,
    ],
    [
      'localhost',
      () => `http://localhost:${port}/`,
      /^refused to connect to localhost \((127\.0\.0\.1|::1)\): /,
    ],
  ])('refuses %s before any connection is made', async (_name, url, message) => {
    const guarded = createSender({ allowPrivateTargets: false });
    const outcome = await guarded.send(post(url()), limits);
    await guarded.close();
    expect(outcome).toMatchObject({ kind: 'error', code: 'TARGET_REFUSED' });
    if (outcome.kind === 'error') expect(outcome.message).toMatch(message);
    expect(seen.get(mainServer)).toEqual({ connections: 0, requests: 0 });
  });

  it('lets exactly an allowed host:port through', async () => {
    const guarded = createSender({
      allowPrivateTargets: false,
      allowedTargets: [`http://127.0.0.1:${port}/`],
    });
    const allowed = await guarded.send(post(`http://127.0.0.1:${port}/`), limits);
    const refused = await guarded.send(post(`http://127.0.0.1:${other}/`), limits);
    await guarded.close();
    expect(allowed).toMatchObject({ kind: 'response', status: 200, body: 'main' });
    expect(refused).toMatchObject({ kind: 'error', code: 'TARGET_REFUSED' });
    expect(seen.get(mainServer)).toEqual({ connections: 1, requests: 1 });
    expect(seen.get(otherServer)).toEqual({ connections: 0, requests: 0 });
  });

  it('reaches only the allowed path prefix on an allowed target, before any connection', async () => {
    const before = { ...seen.get(mainServer)! };
    const guarded = createSender({
      allowPrivateTargets: false,
      allowedTargets: [`http://127.0.0.1:${port}/sandbox/crm`],
    });
    const inside = await guarded.send(post(`http://127.0.0.1:${port}/sandbox/crm/unsubscribes`), limits);
    const outside = await guarded.send(post(`http://127.0.0.1:${port}/admin/v1/connections`), limits);
    await guarded.close();
    expect(inside).toMatchObject({ kind: 'response', status: 200 });
    expect(outside).toMatchObject({ kind: 'error', code: 'TARGET_REFUSED' });
    if (outside.kind === 'error') expect(outside.message).toContain('only /sandbox/crm/… may be reached');
    expect(seen.get(mainServer)!.requests).toBe(before.requests + 1);
  });
});
