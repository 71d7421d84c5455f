import { z } from 'zod';
import type { Connection, StoredConnection } from '../../config/connection-schema.js';
import { ConflictError, NotFoundError } from '../../errors.js';
import { ledgerUnsubscribes, links } from '../../store/campaigns.js';
import type { ConnectionAdminDeps, Revise } from './connections.js';
import type { AdminApp } from './index.js';
import { errorBody } from './schemas.js';

const idParams = z.object({ id: z.string().min(1) });

interface LinkHelpers {
  mustGet: (id: string) => Promise<StoredConnection>;
  revise: Revise;
  revision: z.ZodObject<{
    id: z.ZodString;
    version: z.ZodNumber;
    changed: z.ZodBoolean;
    previousVersion: z.ZodNumber;
  }>;
}

/**
 * Campaign links (issue 5): unlinked campaigns, link (with a backfill preview or queue) and unlink.
 * Each link or unlink is a new version guarded by the version it read, so two at once both stay.
 */
export function registerLinkRoutes(
  admin: AdminApp,
  deps: ConnectionAdminDeps,
  { mustGet, revise, revision }: LinkHelpers,
): void {
  admin.get(
    '/connections/:id/unlinked',
    {
      schema: {
        summary: 'The account\u2019s known campaigns this connection does not link',
        tags: ['connections', 'campaigns'],
        params: idParams,
        response: {
          200: z.object({
            id: z.string(),
            account: z.string(),
            unlinked: z.array(z.object({ id: z.string(), name: z.string().optional() })),
          }),
          404: errorBody,
        },
      },
    },
    async (request) => {
      const { connection } = await mustGet(request.params.id);
      const campaigns = await deps.campaigns.campaigns(connection.account);
      return {
        id: connection.id,
        account: connection.account,
        unlinked: campaigns
          .filter((c) => !links(connection, c.id))
          .map((c) => ({ id: c.id, ...(c.name ? { name: c.name } : {}) })),
      };
    },
  );

  admin.post(
    '/connections/:id/links',
    {
      schema: {
        summary:
          'Link a campaign (a new version); with backfill, preview (no confirm) or queue its existing unsubscribes at a capped rate',
        tags: ['connections', 'campaigns'],
        params: idParams,
        body: z
          .object({
            campaign: z
              .string()
              .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'use 1-63 lowercase letters, digits, "-" or "_"'),
            backfill: z
              .object({
                confirm: z.boolean().default(false),
                perSecond: z.number().int().min(1).max(1000).default(50),
              })
              .strict()
              .optional(),
          })
          .strict(),
        response: {
          200: revision.extend({
            campaign: z.string(),
            wouldQueue: z.number().optional(),
            queued: z.number().optional(),
            alreadyQueued: z.number().optional(),
          }),
          400: errorBody,
          404: errorBody,
        },
      },
    },
    async (request) => {
      const { campaign, backfill } = request.body;
      const current = await mustGet(request.params.id);
      const account = current.connection.account;
      if (backfill && !backfill.confirm) {
        // Preview only: nothing is linked or queued.
        const candidates = await backfillCandidates(deps, current.connection, campaign);
        return {
          id: current.connection.id,
          version: current.version,
          changed: false,
          previousVersion: current.version,
          campaign,
          wouldQueue: candidates.length,
        };
      }
      const result = await revise(request, request.params.id, (c) =>
        c.campaigns === '*' || c.campaigns.includes(campaign)
          ? c
          : { ...c, campaigns: [...c.campaigns, campaign].sort() },
      );
      await deps.campaigns.register(account, campaign);
      if (!backfill) return { ...result, campaign };
      const linked = (await mustGet(request.params.id)).connection;
      const candidates = await backfillCandidates(deps, linked, campaign);
      let queued = 0;
      let alreadyQueued = 0;
      const started = Date.now();
      for (const [i, unsubscribe] of candidates.entries()) {
        // Rate cap: item i is not queued before i / perSecond seconds have passed.
        const due = started + (i * 1000) / backfill.perSecond;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (await deps.producer.enqueueExisting(unsubscribe.id, linked)) queued += 1;
        else alreadyQueued += 1;
      }
      request.log.info(
        { connectionId: linked.id, campaign, queued, alreadyQueued },
        'campaign backfill queued',
      );
      return { ...result, campaign, queued, alreadyQueued };
    },
  );

  admin.delete(
    '/connections/:id/links/:campaign',
    {
      schema: {
        summary: 'Unlink a campaign (a new version)',
        tags: ['connections', 'campaigns'],
        params: z.object({ id: z.string().min(1), campaign: z.string().min(1) }),
        response: { 200: revision.extend({ campaign: z.string() }), 404: errorBody, 409: errorBody },
      },
    },
    async (request) => {
      const { id, campaign } = request.params;
      const current = await mustGet(id);
      if (current.connection.campaigns === '*')
        throw new ConflictError(
          `connection ${id} links every campaign ("*"); replace its campaigns with a list first`,
        );
      if (!current.connection.campaigns.includes(campaign))
        throw new NotFoundError(`connection ${id} does not link campaign ${campaign}`);
      const result = await revise(request, id, (c) => ({
        ...c,
        campaigns: (c.campaigns as string[]).filter((x) => x !== campaign),
      }));
      return { ...result, campaign };
    },
  );
}

/** The campaign's unsubscribes in the ledger that this connection should get (no echo unless asked). */
async function backfillCandidates(deps: ConnectionAdminDeps, connection: Connection, campaign: string) {
  const all = await ledgerUnsubscribes(deps.redis, deps.keys, connection.account, campaign);
  return all.filter((u) => u.origin !== 'advertiser' || connection.echo);
}
