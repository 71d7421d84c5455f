import { z } from 'zod';
import type { EventLog } from '../../events/event-log.js';
import { operationalEventSchema, operationalEventType } from '../../events/operational-event.js';
import type { AdminApp } from './index.js';
import { errorBody, isoTime } from './schemas.js';

const listQuery = z
  .object({
    connection: z.string().min(1).optional(),
    type: operationalEventType.optional(),
    since: isoTime.optional(),
    limit: z.coerce.number().int().min(1).max(1_000).default(100),
  })
  .strict();

/** The operational event log: connections failing and recovering, circuits, pauses, exhausted deliveries. */
export function registerEventRoutes(admin: AdminApp, deps: { events: Pick<EventLog, 'list'> }): void {
  admin.get(
    '/events',
    {
      schema: {
        summary: 'Operational events, newest first',
        tags: ['events'],
        querystring: listQuery,
        response: { 200: z.object({ events: z.array(operationalEventSchema) }), 400: errorBody },
      },
    },
    async (request) => {
      const { since, ...rest } = request.query;
      return { events: await deps.events.list({ ...rest, ...(since ? { since: new Date(since) } : {}) }) };
    },
  );
}
