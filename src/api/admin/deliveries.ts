import { z } from 'zod';
import { attemptSchema, deliveryStatus, sharedRequestSchema } from '../../domain/delivery.js';
import type { AdminApp, AdminDeps } from './index.js';
import { errorBody, isoTime } from './schemas.js';

const deliverySummary = z.object({
  id: z.string(),
  unsubscribeId: z.string(),
  connectionId: z.string(),
  account: z.string().optional(),
  campaign: z.string().optional(),
  status: deliveryStatus,
  attemptsMade: z.number(),
  createdAt: z.string(),
  finishedAt: z.string().optional(),
  failedReason: z.string().optional(),
  /** A duplicate delivered as part of this other delivery (same email, same connection, within the window). */
  mergedInto: z.string().optional(),
});

const listQuery = z
  .object({
    status: deliveryStatus.optional(),
    connection: z.string().min(1).optional(),
    since: isoTime.optional(),
    until: isoTime.optional(),
    campaign: z.string().min(1).optional(),
    errorCode: z
      .string()
      .regex(/^[A-Z][A-Z0-9_]*$/, 'use an error code such as HTTP_STATUS, NETWORK or DEADLINE_PASSED')
      .optional(),
    limit: z.coerce.number().int().min(1).max(1_000).default(100),
  })
  .strict();

const replayBody = z
  .object({
    connection: z.string().min(1, 'name the connection whose failed deliveries to replay'),
    since: isoTime.optional(),
  })
  .strict();

const idParams = z.object({ id: z.string().min(1) });

/** Delivery records and replay. Domain errors (not found, not failed) map to 404/409 in the app's error handler. */
export function registerDeliveryRoutes(admin: AdminApp, deps: Pick<AdminDeps, 'deliveries'>): void {
  admin.get(
    '/deliveries',
    {
      schema: {
        summary: 'List delivery records, newest first',
        tags: ['deliveries'],
        querystring: listQuery,
        response: { 200: z.object({ deliveries: z.array(deliverySummary) }), 400: errorBody },
      },
    },
    async (request) => {
      const { since, until, ...rest } = request.query;
      return {
        deliveries: await deps.deliveries.list({
          ...rest,
          ...(since ? { since: new Date(since) } : {}),
          ...(until ? { until: new Date(until) } : {}),
        }),
      };
    },
  );

  admin.get(
    '/deliveries/:id',
    {
      schema: {
        summary: 'One delivery with every attempt (requests redacted)',
        tags: ['deliveries'],
        params: idParams,
        response: {
          200: deliverySummary.extend({
            attempts: z.array(attemptSchema),
            /** The requests its batched attempts shared, by batch id (its own item is in each attempt). */
            batchRequests: z.record(z.string(), sharedRequestSchema).optional(),
          }),
          404: errorBody,
        },
      },
    },
    async (request) => deps.deliveries.get(request.params.id),
  );

  admin.post(
    '/deliveries/:id/replay',
    {
      schema: {
        summary: 'Replay one failed delivery (re-rendered with the connection’s current version)',
        tags: ['deliveries'],
        params: idParams,
        response: { 202: z.object({ replayed: z.array(z.string()) }), 404: errorBody, 409: errorBody },
      },
    },
    async (request, reply) => {
      await deps.deliveries.replay(request.params.id);
      request.log.info({ deliveryId: request.params.id }, 'delivery replayed by an operator');
      return reply.code(202).send({ replayed: [request.params.id] });
    },
  );

  admin.post(
    '/replay',
    {
      schema: {
        summary: 'Replay every failed delivery of a connection',
        tags: ['deliveries'],
        body: replayBody,
        response: { 202: z.object({ replayed: z.array(z.string()) }), 400: errorBody },
      },
    },
    async (request, reply) => {
      const { connection, since } = request.body;
      const replayed = await deps.deliveries.replayMatching({
        connection,
        ...(since ? { since: new Date(since) } : {}),
      });
      request.log.info(
        { connectionId: connection, count: replayed.length },
        'failed deliveries replayed by an operator',
      );
      return reply.code(202).send({ replayed });
    },
  );
}
