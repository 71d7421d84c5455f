import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RenderedRequest } from '../../src/domain/delivery.js';
import { createSender } from '../../src/http/sender.js';

const timeouts = { connect: 2_000, headers: 2_000, body: 2_000 };
const limits = { timeouts, maxResponseBytes: 65_536 };

interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const received: Received[] = [];
const servers: net.Server[] = [];
let base = '';
let port = 0;

/** Every server-side socket, so teardown never waits on a connection a test left hanging. */
const sockets = new Set<net.Socket>();

async function listen(server: net.Server): Promise<number> {
  servers.push(server);
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function route(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
  switch (new URL(req.url!, 'http://x').pathname) {
    case '/ok':
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'X-Request-Id': 'abc-123',
        'Set-Cookie': ['a=1', 'b=2'],
      });
      return void res.end('{"ok":true,"name":"Zoë"}');
    case '/echo':
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      res.writeHead(204);
      return void res.end();
    case '/unavailable':
      res.writeHead(503, { 'Retry-After': '120' });
      return void res.end('try later');
    case '/never':
      return; // never answers: the client must give up on headers
    case '/stall':
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      return void res.write('partial'); // headers and a first chunk, then nothing
    case '/trickle': {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      // A byte every 100ms: the idle body timeout never fires, only the overall deadline can.
      const drip = setInterval(() => res.write('.'), 100);
      res.once('close', () => clearInterval(drip));
      return;
    }
    case '/large':
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      for (let i = 0; i < 64; i++) res.write('x'.repeat(1_024));
      return void res.end();
    case '/sized': {
      // Declared up front (most CRMs' answers): read whole, without streaming it.
      const sized = 'y'.repeat(Number(new URL(req.url!, 'http://x').searchParams.get('bytes')));
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(sized.length) });
      return void res.end(sized);
    }
    case '/short':
      // Declares more than it sends, then hangs up.
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '100' });
      res.write('only ten..');
      return void setTimeout(() => res.socket?.destroy(), 20);
    case '/odd-headers':
      // Raw pairs: a header named __proto__, and one sent twice in different cases.
      res.writeHead(200, ['__proto__', 'odd', 'X-Twice', 'a', 'x-twice', 'b']);
      return void res.end('{}');
    case '/redirect':
      res.writeHead(302, { Location: 'http://169.254.169.254/latest/meta-data/' });
      return void res.end();
    default:
      res.writeHead(404);
      res.end();
  }
}

beforeAll(async () => {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => route(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  port = await listen(server);
  base = `http://127.0.0.1:${port}`;
});

const sender = createSender({ allowPrivateTargets: true });

afterAll(async () => {
  await sender.close();
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

function get(url: string): RenderedRequest {
  return { method: 'GET', url, headers: {}, secrets: [] };
}

describe('sender against loopback servers', () => {
  it('returns status, lowercase headers and the UTF-8 body', async () => {
    const outcome = await sender.send(get(`${base}/ok`), limits);
    expect(outcome).toMatchObject({
      kind: 'response',
      status: 200,
      body: '{"ok":true,"name":"Zoë"}',
      bodyTruncated: false,
    });
    if (outcome.kind !== 'response') throw new TypeError('expected a response');
    expect(outcome.headers['content-type']).toBe('application/json');
    expect(outcome.headers['x-request-id']).toBe('abc-123');
    expect(outcome.headers['set-cookie']).toBe('a=1, b=2');
    expect(outcome.durationMs).toBeGreaterThanOrEqual(0);
    expect(outcome.durationMs).toBeLessThan(2_000);
  });

  it('keeps a header named __proto__ as a header, and joins one sent twice', async () => {
    const outcome = await sender.send(get(`${base}/odd-headers`), limits);
    if (outcome.kind !== 'response') throw new TypeError('expected a response');
    expect(Object.getPrototypeOf(outcome.headers)).toBe(Object.prototype);
    expect(Object.hasOwn(outcome.headers, '__proto__')).toBe(true);
    expect(outcome.headers['__proto__']).toBe('odd');
    expect(outcome.headers['x-twice']).toBe('a, b');
  });

  it('sends method, headers, path with query and body exactly', async () => {
    received.length = 0;
    const body = '{"email":"a+b@example.com","note":"ünïcode"}';
    const outcome = await sender.send(
      {
        method: 'PATCH',
        url: `${base}/echo?list=42&x=a%20b`,
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer s3cret', 'X-Custom': 'v' },
        body,
        secrets: ['s3cret'],
      },
      limits,
    );
    expect(outcome).toMatchObject({ kind: 'response', status: 204, body: '', bodyTruncated: false });
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ method: 'PATCH', url: '/echo?list=42&x=a%20b', body });
    expect(received[0]!.headers).toMatchObject({
      'content-type': 'application/json',
      authorization: 'Bearer s3cret',
      'x-custom': 'v',
      'content-length': String(Buffer.byteLength(body)),
      host: `127.0.0.1:${port}`,
    });
  });

  it('returns a 503 as a response, not an error', async () => {
    const outcome = await sender.send(get(`${base}/unavailable`), limits);
    expect(outcome).toMatchObject({ kind: 'response', status: 503, body: 'try later', bodyTruncated: false });
    if (outcome.kind === 'response') expect(outcome.headers['retry-after']).toBe('120');
  });

  it('does not follow redirects', async () => {
    const outcome = await sender.send(get(`${base}/redirect`), limits);
    expect(outcome).toMatchObject({ kind: 'response', status: 302 });
  });

  it('maps a server that never answers to HEADERS_TIMEOUT', async () => {
    const outcome = await sender.send(get(`${base}/never`), {
      ...limits,
      timeouts: { ...timeouts, headers: 200 },
    });
    expect(outcome).toMatchObject({
      kind: 'error',
      code: 'HEADERS_TIMEOUT',
      message: `no response headers from 127.0.0.1:${port} within 200ms`,
    });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(200);
    expect(outcome.durationMs).toBeLessThan(2_000); // undici's timers tick every ~0.5s
  });

  it('maps a body that stalls after the headers to BODY_TIMEOUT', async () => {
    const outcome = await sender.send(get(`${base}/stall`), {
      ...limits,
      timeouts: { ...timeouts, body: 200 },
    });
    expect(outcome).toMatchObject({
      kind: 'error',
      code: 'BODY_TIMEOUT',
      message: `response body from 127.0.0.1:${port} stalled for 200ms`,
    });
  });

  it('ends a body trickled forever at the overall deadline (connect + headers + body)', async () => {
    const outcome = await sender.send(get(`${base}/trickle`), {
      ...limits,
      timeouts: { connect: 100, headers: 100, body: 800 },
    });
    expect(outcome).toMatchObject({
      kind: 'error',
      code: 'BODY_TIMEOUT',
      message: `response body from 127.0.0.1:${port} not complete within 1s`,
    });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(1_000);
    expect(outcome.durationMs).toBeLessThan(1_500);
  });

  it('counts time queued for a busy pool against the overall deadline', async () => {
    const single = createSender({ allowPrivateTargets: true, connectionsPerOrigin: 1 });
    // Same connect timeout, so both share one Agent and its single connection to the origin.
    const busy = single.send(get(`${base}/never`), { ...limits, timeouts: { ...timeouts, connect: 100 } });
    const queued = await single.send(get(`${base}/ok`), {
      ...limits,
      timeouts: { connect: 100, headers: 100, body: 100 },
    });
    expect(queued).toMatchObject({
      kind: 'error',
      code: 'HEADERS_TIMEOUT',
      message: `no response headers from 127.0.0.1:${port} within 300ms, queueing included`,
    });
    expect(await busy).toMatchObject({ kind: 'error', code: 'HEADERS_TIMEOUT' });
    await single.close();
  });

  it('truncates a large body to exactly maxResponseBytes', async () => {
    const outcome = await sender.send(get(`${base}/large`), { ...limits, maxResponseBytes: 5_000 });
    expect(outcome).toMatchObject({
      kind: 'response',
      status: 200,
      bodyTruncated: true,
      body: 'x'.repeat(5_000),
    });
  });

  it('keeps a body of exactly maxResponseBytes whole', async () => {
    const outcome = await sender.send(get(`${base}/large`), { ...limits, maxResponseBytes: 65_536 });
    expect(outcome).toMatchObject({ kind: 'response', bodyTruncated: false, body: 'x'.repeat(65_536) });
  });

  it('reads a body of declared length up to maxResponseBytes whole, and truncates a longer one', async () => {
    const fits = await sender.send(get(`${base}/sized?bytes=5000`), { ...limits, maxResponseBytes: 5_000 });
    expect(fits).toMatchObject({ kind: 'response', bodyTruncated: false, body: 'y'.repeat(5_000) });
    const over = await sender.send(get(`${base}/sized?bytes=5001`), { ...limits, maxResponseBytes: 5_000 });
    expect(over).toMatchObject({ kind: 'response', bodyTruncated: true, body: 'y'.repeat(5_000) });
  });

  it('reports a body shorter than its declared length as a network error, not an answer', async () => {
    const outcome = await sender.send(get(`${base}/short`), limits);
    expect(outcome).toMatchObject({ kind: 'error', code: 'NETWORK' });
  });

  it('drops a multi-byte character cut by the limit instead of showing U+FFFD', async () => {
    const outcome = await sender.send(get(`${base}/ok`), { ...limits, maxResponseBytes: 22 });
    // '{"ok":true,"name":"Zo' is 21 bytes; 'ë' is 2 bytes, so byte 22 is half of it.
    expect(outcome).toMatchObject({ kind: 'response', bodyTruncated: true, body: '{"ok":true,"name":"Zo' });
  });

  it('maps a closed port to NETWORK with ECONNREFUSED', async () => {
    const closed = await listen(net.createServer());
    await new Promise((resolve) => servers.pop()!.close(resolve));
    const outcome = await sender.send(get(`http://127.0.0.1:${closed}/`), limits);
    expect(outcome).toMatchObject({
      kind: 'error',
      code: 'NETWORK',
      message: `ECONNREFUSED: connection refused by 127.0.0.1:${closed}`,
    });
  });

  it('maps a peer that hangs up mid-request to NETWORK', async () => {
    const rude = await listen(net.createServer((socket) => socket.once('data', () => socket.destroy())));
    const outcome = await sender.send(get(`http://127.0.0.1:${rude}/`), limits);
    expect(outcome).toMatchObject({
      kind: 'error',
      code: 'NETWORK',
      message: `UND_ERR_SOCKET: socket closed by 127.0.0.1:${rude}`,
    });
  });

  it('maps a TLS handshake that never completes to CONNECT_TIMEOUT (connect timeout covers TLS)', async () => {
    // A TCP server that accepts and stays silent: the TCP connect succeeds at once on loopback, but
    // the TLS handshake never does, so undici's connect timeout is what fires.
    const silent = await listen(net.createServer(() => undefined));
    const outcome = await sender.send(get(`https://127.0.0.1:${silent}/`), {
      ...limits,
      timeouts: { ...timeouts, connect: 300 },
    });
    expect(outcome).toMatchObject({
      kind: 'error',
      code: 'CONNECT_TIMEOUT',
      message: `no connection to 127.0.0.1:${silent} within 300ms`,
    });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(300);
    expect(outcome.durationMs).toBeLessThan(2_000); // undici's timers tick every ~0.5s
  });

  it('refuses invalid and non-HTTP URLs without throwing', async () => {
    expect(await sender.send(get('not a url'), limits)).toMatchObject({
      kind: 'error',
      code: 'TARGET_REFUSED',
    });
    expect(await sender.send(get('file:///etc/passwd'), limits)).toMatchObject({
      kind: 'error',
      code: 'TARGET_REFUSED',
      message: 'only http and https targets are allowed, not file:',
    });
  });
});
