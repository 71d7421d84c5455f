import { z } from 'zod';
import { unsubscribeSchema } from '../../domain/unsubscribe.js';
import { auditCsv } from '../../store/unsubscribes.js';
import type { AdminApp, AdminDeps } from './index.js';
import { errorBody, isoTime } from './schemas.js';

const accountParams = z.object({ account: z.string().min(1) });
const email = z.string().trim().min(1).max(254);
const ledgerStatus = z.enum(['pending', 'retrying', 'succeeded', 'failed', 'expired']);

const unsubscribeView = unsubscribeSchema.extend({
  deliveries: z.array(z.object({ id: z.string(), connectionId: z.string(), status: ledgerStatus })),
});

const listQuery = z
  .object({
    email: email.optional(),
    campaign: z.string().min(1).optional(),
    since: isoTime.optional(),
    until: isoTime.optional(),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    cursor: z
      .string()
      .regex(/^\d+:.+$/, 'pass the nextCursor of the previous page')
      .optional(),
  })
  .strict();

const auditQuery = z
  .object({
    email: email.optional(),
    since: isoTime.optional(),
    until: isoTime.optional(),
    format: z.enum(['json', 'csv']).default('json'),
  })
  .strict();

const auditRow = z.object({
  unsubscribeId: z.string(),
  email: z.string(),
  campaign: z.string(),
  receivedAt: z.string(),
  connectionId: z.string(),
  status: ledgerStatus,
  acknowledgedAt: z.string(),
  attempts: z.number(),
  lastErrorCode: z.string(),
});

/** The Unsubscribes view, the suppression lookup and the audit export, per account. */
export function registerUnsubscribeRoutes(admin: AdminApp, deps: Pick<AdminDeps, 'unsubscribes'>): void {
  admin.get(
    '/accounts/:account/unsubscribes',
    {
      schema: {
        summary: 'An account’s unsubscribes, newest first, each with its deliveries’ status per connection',
        tags: ['unsubscribes'],
        params: accountParams,
        querystring: listQuery,
        response: {
          200: z.object({ unsubscribes: z.array(unsubscribeView), nextCursor: z.string().optional() }),
          400: errorBody,
        },
      },
    },
    async (request) => {
      const { since, until, email: byEmail, campaign, cursor, limit } = request.query;
      return deps.unsubscribes.list(request.params.account, {
        limit,
        ...(byEmail ? { email: byEmail } : {}),
        ...(campaign ? { campaign } : {}),
        ...(cursor ? { cursor } : {}),
        ...(since ? { since: new Date(since) } : {}),
        ...(until ? { until: new Date(until) } : {}),
      });
    },
  );

  admin.get(
    '/accounts/:account/unsubscribes/:id',
    {
      schema: {
        summary: 'One unsubscribe with its deliveries’ status per connection',
        tags: ['unsubscribes'],
        params: accountParams.extend({ id: z.string().min(1) }),
        response: { 200: unsubscribeView, 404: errorBody },
      },
    },
    async (request) => deps.unsubscribes.get(request.params.account, request.params.id),
  );

  admin.get(
    '/accounts/:account/suppressions/:email',
    {
      schema: {
        summary: 'Is this email unsubscribed for this account, and since when (case-insensitive)',
        tags: ['unsubscribes'],
        params: accountParams.extend({ email }),
        response: {
          200: z.object({
            suppressed: z.boolean(),
            since: z.string().optional(),
            unsubscribeIds: z.array(z.string()),
          }),
          400: errorBody,
        },
      },
    },
    async (request) => deps.unsubscribes.suppression(request.params.account, request.params.email),
  );

  admin.get(
    '/accounts/:account/audit',
    {
      schema: {
        summary:
          'Audit export: when each connection acknowledged each unsubscribe, for an email or a time range (json or csv)',
        tags: ['unsubscribes'],
        params: accountParams,
        querystring: auditQuery,
        response: { 200: z.union([z.object({ rows: z.array(auditRow) }), z.string()]), 400: errorBody },
      },
    },
    async (request, reply) => {
      const { email: byEmail, since, until, format } = request.query;
      const rows = await deps.unsubscribes.audit(request.params.account, {
        ...(byEmail ? { email: byEmail } : {}),
        ...(since ? { since: new Date(since) } : {}),
        ...(until ? { until: new Date(until) } : {}),
      });
      if (format === 'csv') return reply.type('text/csv; charset=utf-8').send(auditCsv(rows));
      return { rows };
    },
  );
}
