import { z } from 'zod';
import { links } from '../../store/campaigns.js';
import type { ConnectionAdminDeps } from './connections.js';
import type { AdminApp } from './index.js';
import { errorBody } from './schemas.js';

const slug = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'use 1-63 lowercase letters, digits, "-" or "_"');

/** Accounts and their campaigns (issue 5). */
export function registerAccountRoutes(admin: AdminApp, deps: ConnectionAdminDeps): void {
  admin.get(
    '/accounts',
    {
      schema: {
        summary: 'Accounts: registered, seen on unsubscribes, or owning a connection',
        tags: ['accounts'],
        response: {
          200: z.object({
            accounts: z.array(z.object({ id: z.string(), campaigns: z.number(), connections: z.number() })),
          }),
        },
      },
    },
    async () => {
      const connections = await deps.store.list();
      const ids = new Set([
        ...(await deps.campaigns.accounts()),
        ...connections.map((c) => c.connection.account),
      ]);
      const accounts = [];
      for (const id of [...ids].sort()) {
        accounts.push({
          id,
          campaigns: (await deps.campaigns.campaigns(id)).length,
          connections: connections.filter((c) => c.connection.account === id).length,
        });
      }
      return { accounts };
    },
  );

  admin.get(
    '/accounts/:account/campaigns',
    {
      schema: {
        summary: 'An account\u2019s campaigns, each with the connections linking it',
        tags: ['accounts', 'campaigns'],
        params: z.object({ account: z.string().min(1) }),
        response: {
          200: z.object({
            account: z.string(),
            campaigns: z.array(
              z.object({
                id: z.string(),
                name: z.string().optional(),
                registeredAt: z.string(),
                via: z.string(),
                connections: z.array(z.string()),
              }),
            ),
          }),
        },
      },
    },
    async (request) => {
      const { account } = request.params;
      const connections = (await deps.store.list()).filter((c) => c.connection.account === account);
      const campaigns = (await deps.campaigns.campaigns(account)).map((campaign) => ({
        ...campaign,
        connections: connections.filter((c) => links(c.connection, campaign.id)).map((c) => c.connection.id),
      }));
      return { account, campaigns };
    },
  );

  admin.post(
    '/accounts/:account/campaigns',
    {
      schema: {
        summary: 'Register a campaign of an account (or rename it)',
        tags: ['accounts', 'campaigns'],
        params: z.object({ account: slug }),
        body: z.object({ id: slug, name: z.string().min(1).max(200).optional() }).strict(),
        response: {
          201: z.object({
            id: z.string(),
            name: z.string().optional(),
            registeredAt: z.string(),
            via: z.string(),
          }),
          200: z.object({
            id: z.string(),
            name: z.string().optional(),
            registeredAt: z.string(),
            via: z.string(),
          }),
          400: errorBody,
        },
      },
    },
    async (request, reply) => {
      const { campaign, created } = await deps.campaigns.register(
        request.params.account,
        request.body.id,
        request.body.name,
      );
      return reply.code(created ? 201 : 200).send(campaign);
    },
  );
}
