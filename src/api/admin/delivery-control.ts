import { z } from 'zod';
import type { ConnectionOperations } from '../../queue/connection-operations.js';
import type { Backlog, Backlogs } from '../../store/backlogs.js';
import type { AdminApp } from './index.js';
import { operatorOf } from './operator.js';
import { errorBody } from './schemas.js';

/** What the delivery-control routes need (issue 6). */
export interface DeliveryControlDeps {
  backlogs: Backlogs;
  operations: ConnectionOperations;
  /** Connections reading secrets this process does not have, with the names (never values). */
  missingSecrets?: () => Promise<Map<string, string[]>>;
}

const idParams = z.object({ id: z.string().min(1) });
const counts = z.object({
  waiting: z.number(),
  delayed: z.number(),
  active: z.number(),
  paused: z.number(),
  failed: z.number(),
});
const backlog = z.object({
  connectionId: z.string(),
  connection: z.enum(['active', 'disabled', 'deleted']),
  counts,
  oldestPendingAgeSeconds: z.number(),
  queuePaused: z.boolean(),
  concurrency: z.number().optional(),
  control: z.object({
    circuit: z.enum(['closed', 'open', 'half_open']),
    consecutiveFailures: z.number(),
    failing: z.boolean(),
    openUntil: z.string().optional(),
    changedAt: z.string().optional(),
    paused: z.object({ by: z.string(), at: z.string(), reason: z.string() }).optional(),
  }),
  /** Set when the connection reads secrets that are not set: every delivery would fail (misconfigured). */
  missingSecrets: z.array(z.string()).optional(),
});
const selection = {
  /** Also take failed deliveries, not only pending ones. */
  includeFailed: z.boolean().default(false),
  confirm: z.boolean().optional(),
};
/** Deliveries a worker is sending as the backlog is listed: left to it; they end delivered or back in the backlog. */
const sendingNow = z.number();
const preview = z.object({ wouldTake: z.number(), sample: z.array(z.string()), sendingNow });

function withMissing(backlog: Backlog, missing: string[] | undefined) {
  return missing ? { ...backlog, missingSecrets: missing } : backlog;
}

/**
 * Delivery control: each connection's queue, circuit and pause; pause and resume; close a circuit by
 * hand; move or discard the backlog of a deleted, disabled or paused connection (a preview unless
 * `confirm: true`).
 */
export function registerDeliveryControlRoutes(admin: AdminApp, deps: DeliveryControlDeps): void {
  const misconfigured = () => deps.missingSecrets?.() ?? Promise.resolve(new Map<string, string[]>());
  admin.get(
    '/backlogs',
    {
      schema: {
        summary:
          "Every connection's queue: depth by state, oldest pending, pause and circuit (deleted connections too)",
        tags: ['delivery control'],
        response: { 200: z.object({ backlogs: z.array(backlog) }) },
      },
    },
    async () => {
      const [backlogs, missing] = await Promise.all([deps.backlogs.backlogs(), misconfigured()]);
      return { backlogs: backlogs.map((b) => withMissing(b, missing.get(b.connectionId))) };
    },
  );

  admin.get(
    '/connections/:id/backlog',
    {
      schema: {
        summary: "One connection's queue, pause and circuit",
        tags: ['delivery control'],
        params: idParams,
        response: { 200: backlog },
      },
    },
    async (request) => {
      const [one, missing] = await Promise.all([deps.backlogs.of(request.params.id), misconfigured()]);
      return withMissing(one, missing.get(request.params.id));
    },
  );

  admin.post(
    '/connections/:id/pause',
    {
      schema: {
        summary: 'Pause deliveries to a connection in every worker; the backlog is kept',
        tags: ['delivery control'],
        params: idParams,
        body: z
          .object({ reason: z.string().max(500).default('') })
          .strict()
          .default({ reason: '' }),
        response: { 200: backlog, 404: errorBody },
      },
    },
    async (request) => {
      await deps.operations.pause(request.params.id, operatorOf(request), request.body.reason);
      request.log.info({ connectionId: request.params.id, who: operatorOf(request) }, 'connection paused');
      return deps.backlogs.of(request.params.id);
    },
  );

  // Actions that take only the connection and answer with its state afterwards.
  const actions = [
    {
      path: 'resume',
      summary: 'Resume a paused connection; its backlog drains',
      act: (id: string, by: string) => deps.operations.resume(id, by),
      logged: 'connection resumed',
    },
    {
      path: 'circuit/close',
      summary: "Close a connection's circuit by hand (its CRM is known to be back)",
      act: (id: string, by: string) => deps.operations.closeCircuit(id, by),
      logged: 'circuit closed by hand',
    },
  ];
  for (const action of actions)
    admin.post(
      `/connections/:id/${action.path}`,
      {
        schema: {
          summary: action.summary,
          tags: ['delivery control'],
          params: idParams,
          response: { 200: backlog, 404: errorBody, 409: errorBody },
        },
      },
      async (request) => {
        await action.act(request.params.id, operatorOf(request));
        request.log.info({ connectionId: request.params.id, who: operatorOf(request) }, action.logged);
        return deps.backlogs.of(request.params.id);
      },
    );

  admin.post(
    '/connections/:id/backlog/discard',
    {
      schema: {
        summary: 'Discard the backlog of a deleted, disabled or paused connection (preview unless confirm)',
        tags: ['delivery control'],
        params: idParams,
        body: z.object({ ...selection, reason: z.string().max(500).default('') }).strict(),
        response: {
          200: preview,
          202: z.object({ discarded: z.number(), ids: z.array(z.string()), sendingNow }),
          404: errorBody,
          409: errorBody,
        },
      },
    },
    async (request, reply) => {
      const { confirm, includeFailed, reason } = request.body;
      if (!confirm) {
        const { count, sample, sendingNow } = await deps.operations.preview(request.params.id, {
          includeFailed,
        });
        return { wouldTake: count, sample, sendingNow };
      }
      const { discarded: ids, sendingNow } = await deps.operations.discard(
        request.params.id,
        operatorOf(request),
        reason,
        { includeFailed },
      );
      request.log.warn(
        { connectionId: request.params.id, who: operatorOf(request), count: ids.length, reason },
        'backlog discarded by an operator',
      );
      return reply.code(202).send({ discarded: ids.length, ids, sendingNow });
    },
  );

  admin.post(
    '/connections/:id/backlog/move',
    {
      schema: {
        summary: 'Move the backlog of a deleted, disabled or paused connection to another connection',
        tags: ['delivery control'],
        params: idParams,
        body: z.object({ ...selection, to: z.string().min(1) }).strict(),
        response: {
          200: preview,
          202: z.object({
            moved: z.number(),
            alreadyThere: z.number(),
            ids: z.array(z.string()),
            sendingNow,
          }),
          404: errorBody,
          409: errorBody,
        },
      },
    },
    async (request, reply) => {
      const { confirm, includeFailed, to } = request.body;
      if (!confirm) {
        const { count, sample, sendingNow } = await deps.operations.preview(request.params.id, {
          includeFailed,
        });
        return { wouldTake: count, sample, sendingNow };
      }
      const result = await deps.operations.move(request.params.id, to, operatorOf(request), {
        includeFailed,
      });
      request.log.info(
        { connectionId: request.params.id, to, who: operatorOf(request), count: result.moved.length },
        'backlog moved by an operator',
      );
      return reply.code(202).send({
        moved: result.moved.length,
        alreadyThere: result.alreadyThere,
        ids: result.moved,
        sendingNow: result.sendingNow,
      });
    },
  );
}
