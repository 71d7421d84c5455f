import { createHash, timingSafeEqual } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { presentedCredential } from '../credentials.js';
import { sendError } from '../errors.js';
import { noStore, useDashboardPolicy } from '../security-headers.js';

export interface QueueDashboardDeps {
  adminToken: string;
  /** The current queues; called lazily, at most once per `refreshMs`. */
  queues: () => Promise<Queue[]>;
  basePath?: string;
  /** How stale the board's queue list may get (connections come and go at runtime). */
  refreshMs?: number;
  /** For tests: the clock `refreshMs` is measured on. */
  now?: () => number;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Bearer (or raw, as the admin API takes it) for scripts; Basic with the token as password for browsers. */
function credential(header: string | undefined): string | undefined {
  const basic = /^Basic\s+(\S+)\s*$/i.exec(header ?? '');
  if (!basic) return presentedCredential(header);
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  // RFC 7617: the user-id cannot contain ':', so the password is everything after the first one.
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : decoded.slice(colon + 1) || undefined;
}

/**
 * bull-board's UI and API under `/admin/queues`, behind the admin token. Registered in its own
 * encapsulated plugin so its hook and 404 handler touch nothing else; bull-board marks its routes
 * `hide`, so they stay out of the admin OpenAPI document.
 */
export async function registerQueueDashboard(app: FastifyInstance, deps: QueueDashboardDeps): Promise<void> {
  const basePath = deps.basePath ?? '/admin/queues';
  const refreshMs = deps.refreshMs ?? 5_000;
  const now = deps.now ?? Date.now;
  const expected = digest(deps.adminToken);

  const serverAdapter = new FastifyAdapter().setBasePath(basePath);
  const board = createBullBoard({
    queues: [],
    serverAdapter,
    options: { uiConfig: { boardTitle: 'unsub-relay queues' } },
  });

  // Refreshed on demand rather than on a timer, so an idle dashboard neither keeps the process
  // alive nor polls Redis; concurrent requests share one refresh.
  let refreshedAt = -Infinity;
  let refreshing: Promise<void> | undefined;
  const refresh = (log: FastifyBaseLogger) => {
    if (!refreshing && now() - refreshedAt >= refreshMs) {
      refreshedAt = now();
      refreshing = deps
        .queues()
        .then((queues) =>
          board.replaceQueues(
            queues.map((queue) => new BullMQAdapter(queue, { displayName: queue.name, readOnlyMode: true })),
          ),
        )
        // A stale list beats no dashboard; the next request after `refreshMs` tries again.
        .catch((err: unknown) => log.warn({ err }, 'queue dashboard could not list the queues'))
        .finally(() => (refreshing = undefined));
    }
    return refreshing;
  };

  await app.register(
    async (scope) => {
      useDashboardPolicy(scope);
      noStore(scope);
      scope.addHook('onRequest', async (request, reply) => {
        const presented = credential(request.headers.authorization);
        // Digests make the comparison take the same time whatever the presented length.
        if (!presented || !timingSafeEqual(digest(presented), expected)) {
          // The Basic challenge is what makes a browser ask; scripts send Bearer and ignore it.
          return sendError(reply.header('www-authenticate', 'Basic realm="unsub-relay admin"'), 401, {
            error: 'unauthorized',
            message: 'send Authorization: Bearer <admin token> (or Basic, the token as password)',
          });
        }
        // Browsers replay Basic credentials on cross-site requests; bull-board's own UI is same-origin.
        const site = request.headers['sec-fetch-site'];
        if (request.method !== 'GET' && request.method !== 'HEAD' && site && site !== 'same-origin') {
          return sendError(reply, 403, { error: 'forbidden', message: 'cross-site request refused' });
        }
        await refresh(request.log);
        return undefined;
      });
      // Without it an unknown path under the base path would 404 from the root, skipping the hook.
      scope.setNotFoundHandler((request, reply) =>
        sendError(reply, 404, {
          error: 'not_found',
          message: `no route ${request.method} ${request.url.split('?')[0]}`,
        }),
      );
      await scope.register(serverAdapter.registerPlugin());
    },
    { prefix: basePath },
  );
}
