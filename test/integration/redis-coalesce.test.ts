import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coalesceWrites, createRedis, waitReady } from '../../src/store/redis.js';

describe('coalesceWrites', () => {
  let server: net.Server;
  let port = 0;
  const chunks: string[] = [];

  beforeAll(async () => {
    server = net.createServer((socket) => socket.on('data', (chunk) => chunks.push(chunk.toString())));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const connected = async () => {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    return socket;
  };
  const received = async (text: string) => {
    for (let i = 0; i < 100 && chunks.join('') !== text; i++) await new Promise((r) => setTimeout(r, 10));
    return chunks.join('');
  };

  it('sends the writes of one turn as one, and a later turn’s writes after them', async () => {
    chunks.length = 0;
    const socket = await connected();
    coalesceWrites(socket);
    coalesceWrites(socket); // applying it twice (a reconnect event) wraps once
    socket.write('a');
    await Promise.resolve(); // a microtask later is still this turn
    socket.write('b');
    socket.write('c');
    expect(await received('abc')).toBe('abc');
    expect(chunks).toEqual(['abc']);

    await new Promise((r) => setTimeout(r, 20));
    socket.write('d');
    expect(await received('abcd')).toBe('abcd');
    expect(chunks).toEqual(['abc', 'd']);
    socket.destroy();
  });

  it('is on every worker client, which still answers commands across a reconnect', async () => {
    const redis = createRedis('redis://127.0.0.1:6379', 'worker', 'test-coalesce');
    try {
      await waitReady(redis, 5_000);
      const key = `test:coalesce:${process.pid}`;
      const answers = await Promise.all([
        redis.set(key, '1'),
        redis.incr(key),
        redis.get(key),
        redis.del(key),
      ]);
      expect(answers).toEqual(['OK', 2, '2', 1]);

      const reconnected = new Promise<void>((resolve) => redis.once('ready', resolve));
      redis.disconnect(true);
      await reconnected;
      expect(await Promise.all([redis.ping(), redis.echo('after')])).toEqual(['PONG', 'after']);
    } finally {
      redis.disconnect();
    }
  });
});
