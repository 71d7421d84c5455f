import { z } from 'zod';
import { ConflictError, NotFoundError } from '../../errors.js';
import type { AdminApp, AdminDeps } from './index.js';
import { operatorOf } from './operator.js';
import { errorBody, isoTime } from './schemas.js';

/** Default and highest replay rates (deliveries put back on the queue per second). */
export const DEFAULT_REPLAY_RATE = 20;
const MAX_REPLAY_RATE = 500;
const SAMPLE = 10;

const filter = z
  .object({
    connection: z.string().min(1).optional(),
    campaign: z.string().min(1).optional(),
    status: z.literal('failed').optional(),
    errorCode: z
      .string()
      .regex(/^[A-Z][A-Z0-9_]*$/, 'use an error code such as HTTP_STATUS, NETWORK or DEADLINE_PASSED')
      .optional(),
    since: isoTime.optional(),
    until: isoTime.optional(),
  })
  .strict();

const replayBody = z
  .object({
    filter,
    mode: z.enum(['rerender', 'original']).default('rerender'),
    confirm: z.boolean().optional(),
    perSecond: z.number().int().min(1).max(MAX_REPLAY_RATE).default(DEFAULT_REPLAY_RATE),
  })
  .strict();

const replayRecord = z.object({
  id: z.string(),
  who: z.string(),
  when: z.string(),
  filter,
  mode: z.enum(['rerender', 'original']),
  perSecond: z.number(),
  count: z.number(),
  ids: z.array(z.string()),
});

const preview = z.object({ wouldReplay: z.number(), sample: z.array(z.string()) });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Bulk replay by filter (issue 5): a preview without `confirm`, otherwise failed deliveries put
 * back on the queue at most `perSecond` per second, recorded with who/when/filter/count.
 */
export function registerReplayRoutes(admin: AdminApp, deps: Pick<AdminDeps, 'deliveries' | 'replays'>): void {
  admin.post(
    '/replays',
    {
      schema: {
        summary: 'Replay failed deliveries matching a filter (preview unless confirm: true)',
        tags: ['deliveries'],
        body: replayBody,
        response: { 200: preview, 202: replayRecord, 400: errorBody },
      },
    },
    async (request, reply) => {
      const { filter: wanted, mode, confirm, perSecond } = request.body;
      const { since, until, status: _failed, ...rest } = wanted;
      const matching = await deps.deliveries.list({
        ...rest,
        ...(since ? { since: new Date(since) } : {}),
        ...(until ? { until: new Date(until) } : {}),
        status: 'failed',
        limit: 50_000,
      });
      const ids = matching.map((delivery) => delivery.id);
      if (!confirm) return { wouldReplay: ids.length, sample: ids.slice(0, SAMPLE) };

      const replayed: string[] = [];
      for (let i = 0; i < ids.length; i += perSecond) {
        // The rate cap: one batch of `perSecond` per second.
        if (i > 0) await sleep(1_000);
        for (const id of ids.slice(i, i + perSecond)) {
          try {
            await deps.deliveries.replayWithMode(id, mode);
            replayed.push(id);
          } catch (error) {
            // Replayed by someone else meanwhile, or expired: not an error for a bulk replay.
            if (!(error instanceof ConflictError || error instanceof NotFoundError)) throw error;
          }
        }
      }
      const record = await deps.replays.record({
        who: operatorOf(request),
        when: new Date().toISOString(),
        filter: wanted,
        mode,
        perSecond,
        count: replayed.length,
        ids: replayed,
      });
      request.log.info(
        { replayId: record.id, who: record.who, count: record.count, mode },
        'bulk replay by an operator',
      );
      return reply.code(202).send(record);
    },
  );

  admin.post(
    '/replays/one',
    {
      schema: {
        summary: 'Replay one failed delivery, re-rendered (default) or as originally sent',
        tags: ['deliveries'],
        body: z
          .object({ id: z.string().min(1), mode: z.enum(['rerender', 'original']).default('rerender') })
          .strict(),
        response: {
          202: z.object({ replayed: z.array(z.string()) }),
          400: errorBody,
          404: errorBody,
          409: errorBody,
        },
      },
    },
    async (request, reply) => {
      await deps.deliveries.replayWithMode(request.body.id, request.body.mode);
      request.log.info(
        { deliveryId: request.body.id, mode: request.body.mode },
        'delivery replayed by an operator',
      );
      return reply.code(202).send({ replayed: [request.body.id] });
    },
  );

  admin.get(
    '/replays',
    {
      schema: {
        summary: 'Recorded bulk replays, newest first',
        tags: ['deliveries'],
        response: { 200: z.object({ replays: z.array(replayRecord) }) },
      },
    },
    async () => ({ replays: await deps.replays.list() }),
  );
}
