import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { deliveryStatus } from '../domain/delivery.js';
import { InputError, NotFoundError } from '../errors.js';
import type { DeliveryRecords } from '../store/delivery-records.js';
import { presentedCredential } from './credentials.js';
import { sendError } from './errors.js';

export interface AdminDeps {
  adminToken: string;
  deliveries: DeliveryRecords;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

const listQuery = z
  .object({
    status: deliveryStatus.optional(),
    connection: z.string().min(1).optional(),
    since: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time' }).optional(),
    limit: z.coerce.number().int().min(1).max(1_000).default(100),
  })
  .strict();

const replayBody = z
  .object({
    connection: z.string().min(1, 'name the connection whose failed deliveries to replay'),
    since: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time' }).optional(),
  })
  .strict();

function badRequest(reply: FastifyReply, error: z.ZodError) {
  const fields = Object.fromEntries(
    error.issues.map((issue) => [issue.path.join('.') || 'body', issue.message]),
  );
  return sendError(reply, 400, {
    error: 'invalid_request',
    message: `fix these fields: ${Object.keys(fields).join(', ')}`,
    fields,
  });
}

function fromDomainError(reply: FastifyReply, error: unknown) {
  if (error instanceof NotFoundError)
    return sendError(reply, 404, { error: 'not_found', message: error.message });
  if (error instanceof InputError)
    return sendError(reply, 409, { error: 'conflict', message: error.message });
  throw error;
}

/**
 * The operators' API for deliveries, behind `Authorization: Bearer <ADMIN_TOKEN>`. Served only when
 * ADMIN_TOKEN is set: no token configured means no admin surface at all.
 */
export function registerAdminRoutes(app: FastifyInstance, deps: AdminDeps): void {
  const expected = digest(deps.adminToken);
  app.register(
    async (admin) => {
      admin.addHook('onRequest', async (request, reply) => {
        const presented = presentedCredential(request.headers.authorization) ?? '';
        // Compare digests so the comparison takes the same time whatever the token's length.
        if (!presented || !timingSafeEqual(digest(presented), expected)) {
          return sendError(reply, 401, {
            error: 'unauthorized',
            message: 'send Authorization: Bearer <ADMIN_TOKEN>',
          });
        }
        return undefined;
      });

      admin.get('/deliveries', async (request, reply) => {
        const query = listQuery.safeParse(request.query);
        if (!query.success) return badRequest(reply, query.error);
        const { since, ...rest } = query.data;
        const deliveries = await deps.deliveries.list({
          ...rest,
          ...(since ? { since: new Date(since) } : {}),
        });
        return { deliveries };
      });

      admin.get<{ Params: { id: string } }>('/deliveries/:id', async (request, reply) => {
        try {
          return await deps.deliveries.get(request.params.id);
        } catch (error) {
          return fromDomainError(reply, error);
        }
      });

      admin.post<{ Params: { id: string } }>('/deliveries/:id/replay', async (request, reply) => {
        try {
          await deps.deliveries.replay(request.params.id);
          request.log.info({ deliveryId: request.params.id }, 'delivery replayed by an operator');
          return reply.code(202).send({ replayed: [request.params.id] });
        } catch (error) {
          return fromDomainError(reply, error);
        }
      });

      admin.post('/replay', async (request, reply) => {
        const body = replayBody.safeParse(request.body ?? {});
        if (!body.success) return badRequest(reply, body.error);
        const replayed = await deps.deliveries.replayMatching({
          connection: body.data.connection,
          ...(body.data.since ? { since: new Date(body.data.since) } : {}),
        });
        request.log.info(
          { connectionId: body.data.connection, count: replayed.length },
          'failed deliveries replayed by an operator',
        );
        return reply.code(202).send({ replayed });
      });
    },
    { prefix: '/admin/v1' },
  );
}
