/**
 * The benchmark's stand-in CRM: a bare node:http server on loopback, run as its own process so its
 * work does not share an event loop with the harness. Paths:
 *
 *   POST /ok/<tag>/...    200 {"ok":true}, recorded under <tag>; with ?latencyMs=N, answered N ms
 *                         after it arrived, like a CRM across a network (arrival is still the record)
 *   POST /hang/<tag>/...  recorded under <tag>, never answered (the client's timeout ends it)
 *   GET  /_count?tag=t    {count, unique} so far
 *   GET  /_stats?tag=t    counts, first/last arrival and scheduled→received latency percentiles
 *   POST /_reset          forgets everything
 *
 * Latency is `received - scheduledAt`, where scheduledAt (epoch ms, from the delivery's JSON body)
 * is when the load generator meant to send the unsubscribe. Both ends read the same wall clock.
 * Prints `{"port":N}` on stdout once listening.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { nowMs, percentiles } from './lib/stats.js';

interface Tag {
  count: number;
  unique: Set<string>;
  authFailures: number;
  badBodies: number;
  first: number;
  last: number;
  arrivals: number[];
  latencies: number[];
  /** When each latency's delivery arrived. */
  latencyArrivals: number[];
}

const expectedKey = process.env.BENCH_CRM_KEY ?? '';
const tags = new Map<string, Tag>();
const hanging = new Set<ServerResponse>();

function tagOf(name: string): Tag {
  let tag = tags.get(name);
  if (!tag) {
    tag = {
      count: 0,
      unique: new Set(),
      authFailures: 0,
      badBodies: 0,
      first: Number.NaN,
      last: Number.NaN,
      arrivals: [],
      latencies: [],
      latencyArrivals: [],
    };
    tags.set(name, tag);
  }
  return tag;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

type Item = { id?: unknown; scheduledAt?: unknown };

/** One delivery per item: a batched request (`{"items": [...]}`) carries many. */
function record(req: IncomingMessage, path: string, tagName: string, text: string, at: number): Tag {
  const tag = tagOf(tagName);
  if (Number.isNaN(tag.first)) tag.first = at;
  tag.last = at;
  if (expectedKey && req.headers['x-api-key'] !== expectedKey) tag.authFailures += 1;
  let items: Item[];
  try {
    const body = JSON.parse(text) as Item & { items?: Item[] };
    items = Array.isArray(body.items) ? body.items : [body];
  } catch {
    tag.badBodies += 1;
    items = [{}];
  }
  for (const item of items) {
    tag.count += 1;
    tag.arrivals.push(at);
    tag.unique.add(`${String(item.id)}|${path}`);
    const scheduled = Number(item.scheduledAt);
    if (item.scheduledAt !== '' && item.scheduledAt !== undefined && Number.isFinite(scheduled)) {
      tag.latencies.push(at - scheduled);
      tag.latencyArrivals.push(at);
    }
  }
  return tag;
}

function stats(name: string) {
  const tag = tags.get(name);
  if (!tag) return { tag: name, count: 0, unique: 0, authFailures: 0, badBodies: 0 };
  return {
    tag: name,
    count: tag.count,
    unique: tag.unique.size,
    authFailures: tag.authFailures,
    badBodies: tag.badBodies,
    first: tag.first,
    last: tag.last,
    latency: tag.latencies.length ? percentiles(tag.latencies) : undefined,
    slowestBySecond: slowestBySecond(tag),
  };
}

/** The worst latency in each second of arrivals: where in the run a tail came from. */
function slowestBySecond(tag: Tag): number[] {
  const out: number[] = [];
  tag.latencyArrivals.forEach((at, i) => {
    const second = Math.floor((at - tag.first) / 1000);
    out[second] = Math.max(out[second] ?? 0, Math.round(tag.latencies[i]!));
  });
  return Array.from(out, (v) => v ?? 0);
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://crm');
  const [, mode, tagName] = url.pathname.split('/');
  if (req.method === 'GET' && (mode === '_count' || mode === '_stats')) {
    const name = url.searchParams.get('tag') ?? '';
    if (mode === '_stats') return json(res, 200, stats(name));
    const tag = tags.get(name);
    return json(res, 200, { count: tag?.count ?? 0, unique: tag?.unique.size ?? 0 });
  }
  if (req.method === 'POST' && mode === '_reset') {
    tags.clear();
    return json(res, 200, { ok: true });
  }
  if (req.method !== 'POST' || (mode !== 'ok' && mode !== 'hang') || !tagName)
    return json(res, 404, { error: 'not_found' });
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const at = nowMs();
    record(req, url.pathname, tagName, Buffer.concat(chunks).toString('utf8'), at);
    if (mode === 'hang') {
      hanging.add(res);
      res.on('close', () => hanging.delete(res));
      return;
    }
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 11 });
      res.end('{"ok":true}');
    };
    const latency = Number(url.searchParams.get('latencyMs') ?? 0);
    if (latency > 0) setTimeout(answer, latency);
    else answer();
  });
});
// Longer than any client's keep-alive, so the server never closes a socket a client is about to reuse.
server.keepAliveTimeout = 60_000;
server.headersTimeout = 61_000;
server.requestTimeout = 0;

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});

function stop(): void {
  for (const res of hanging) res.destroy();
  server.closeAllConnections();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2_000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
