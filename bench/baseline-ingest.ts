/**
 * The ingest baseline: the same HTTP framework (Fastify, logger off) with a POST /v1/unsubscribes
 * route that only does `queue.add` of the parsed body (BullMQ, same Redis). No key check, no body
 * checks, no ledger, no fan-out. Prints `{"port":N}` once listening.
 *
 * Env: BENCH_REDIS_URL, BENCH_BULL_PREFIX, BENCH_QUEUE.
 */
import { Queue } from 'bullmq';
import Fastify from 'fastify';
import { Redis } from 'ioredis';

const connection = new Redis(process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379', {
  maxRetriesPerRequest: null,
});
const queue = new Queue(process.env.BENCH_QUEUE!, { connection, prefix: process.env.BENCH_BULL_PREFIX! });
const app = Fastify({ logger: false });

app.post('/v1/unsubscribes', async (request, reply) => {
  const job = await queue.add('unsubscribe', request.body);
  return reply.code(201).send({ id: job.id });
});

await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
process.stdout.write(
  `${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`,
);

async function stop(): Promise<void> {
  await app.close();
  await queue.close();
  await connection.quit();
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
