import { createHash, timingSafeEqual } from 'node:crypto';
import swagger from '@fastify/swagger';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import { jsonSchemaTransform, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Queue } from 'bullmq';
import type { ApiKeyStore } from '../../store/api-keys.js';
import type { EventLog } from '../../events/event-log.js';
import type { DeliveryRecords } from '../../store/delivery-records.js';
import type { UnsubscribeLedger } from '../../store/unsubscribes.js';
import type { ReplayStore } from '../../store/replays.js';
import type { TestRunnerDeps } from '../../testing/run-test.js';
import { presentedCredential } from '../credentials.js';
import { ADMIN_BODY_LIMIT_BYTES, limitBodies } from '../body-limits.js';
import { sendError } from '../errors.js';
import { noStore } from '../security-headers.js';
import { registerAccountRoutes } from './accounts.js'; // issue 5: accounts and campaigns
import { registerConnectionRoutes, type ConnectionAdminDeps } from './connections.js'; // issue 5
import { registerDeliveryRoutes } from './deliveries.js';
import { registerDeliveryControlRoutes, type DeliveryControlDeps } from './delivery-control.js';
import { registerQueueDashboard } from './queue-dashboard.js';
import { registerEventRoutes } from './events.js';
import { registerHealthRoute, type Readiness } from './health.js';
import { registerKeyRoutes } from './keys.js';
import { registerReplayRoutes } from './replays.js';
import { registerTestingRoutes } from './testing.js';
import { registerUnsubscribeRoutes } from './unsubscribes.js';

export interface AdminDeps {
  adminToken: string;
  /** The admin API's body limit in bytes (ADMIN_BODY_LIMIT); 8 MiB unless given. */
  bodyLimit?: number;
  deliveries: DeliveryRecords;
  apiKeys: ApiKeyStore;
  /** Unsubscribes view, suppression lookup and audit export (issue 5). */
  unsubscribes: UnsubscribeLedger;
  /** Connection test runs (issue 5): the same exchange as deliveries, recorded apart. */
  testing: TestRunnerDeps;
  /** Recorded bulk replays (issue 5). */
  replays: ReplayStore;
  /** Connections, versions, apply, accounts, campaigns and links (issue 5). */
  connectionAdmin: ConnectionAdminDeps;
  /** The operational event log; `GET /events` is served only when it is given. */
  events?: Pick<EventLog, 'list'>;
  /** Pause, resume, circuits and held backlogs (issue 6). */
  deliveryControl?: DeliveryControlDeps;
  /** Readiness with each connection's health, served at `GET /health`. */
  health?: Readiness;
  /** The BullMQ queues shown in the queue dashboard at /admin/queues (issue 6). */
  queues?: () => Promise<Queue[]>;
}

/** A Fastify instance whose routes take zod schemas (validation, types and OpenAPI from one place). */
export type AdminApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * The operators' API under `/admin/v1`, behind `Authorization: Bearer <admin token>`. Routes are
 * declared with zod schemas: the same schemas validate requests (400 naming each bad field) and
 * produce the OpenAPI document served at `/admin/v1/openapi.json`.
 */
export async function registerAdmin(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'unsub-relay admin API',
        version: '1',
        description: 'Connections, deliveries, replay and API keys.',
      },
      components: { securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } } },
      security: [{ adminToken: [] }],
    },
    transform: jsonSchemaTransform,
  });
  const expected = digest(deps.adminToken);
  await app.register(
    async (admin) => {
      limitBodies(
        admin,
        deps.bodyLimit ?? ADMIN_BODY_LIMIT_BYTES,
        'split the apply into smaller sets of connections, or raise ADMIN_BODY_LIMIT',
      );
      noStore(admin);
      admin.addHook('onRequest', async (request, reply) => {
        const presented = presentedCredential(request.headers.authorization) ?? '';
        // Compare digests so the comparison takes the same time whatever the token's length.
        if (!presented || !timingSafeEqual(digest(presented), expected)) {
          return sendError(reply, 401, {
            error: 'unauthorized',
            message: 'send Authorization: Bearer <admin token>',
          });
        }
        return undefined;
      });
      const typed = admin.withTypeProvider<ZodTypeProvider>();
      typed.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
      registerDeliveryRoutes(typed, deps);
      registerKeyRoutes(typed, deps);
      registerUnsubscribeRoutes(typed, deps);
      registerTestingRoutes(typed, deps); // connection test runs (issue 5)
      registerReplayRoutes(typed, deps); // bulk replay by filter (issue 5)
      registerConnectionRoutes(typed, deps.connectionAdmin); // connections, apply, links (issue 5)
      registerAccountRoutes(typed, deps.connectionAdmin); // accounts and campaigns (issue 5)
      if (deps.events) registerEventRoutes(typed, { events: deps.events }); // operational events
      if (deps.deliveryControl) registerDeliveryControlRoutes(typed, deps.deliveryControl);
      if (deps.health) registerHealthRoute(typed, deps.health);
    },
    { prefix: '/admin/v1' },
  );
  if (deps.queues) await registerQueueDashboard(app, { adminToken: deps.adminToken, queues: deps.queues });
}
