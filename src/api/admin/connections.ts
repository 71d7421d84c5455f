import type { Redis } from 'ioredis';
import { z } from 'zod';
import { ADMIN_SOURCE, applyConnectionSet } from '../../config/apply-connections.js';
import { connectionSchema, type Connection, type StoredConnection } from '../../config/connection-schema.js';
import { zodIssues } from '../../config/load-connections.js';
import { ConflictError, InputError, NotFoundError, type ConfigIssue } from '../../errors.js';
import type { DeliveryProducer } from '../../queue/producer.js';
import { checkRuleValues } from '../../queue/rule-values.js';
import { ledgerUnsubscribes, links, type CampaignStore } from '../../store/campaigns.js';
import { diffConnections, type ConnectionStore } from '../../store/connection-store.js';
import type { Keyspace } from '../../store/keys.js';
import { checkTemplates } from '../../templates/render-request.js';
import type { AdminApp } from './index.js';
import { errorBody } from './schemas.js';

/** What the connection, account and campaign routes need (issue 5). */
export interface ConnectionAdminDeps {
  store: ConnectionStore;
  campaigns: CampaignStore;
  producer: DeliveryProducer;
  redis: Redis;
  keys: Keyspace;
}

const idParams = z.object({ id: z.string().min(1) });
const anyObject = z.record(z.string(), z.unknown());
const stored = z.object({
  version: z.number(),
  updatedAt: z.string(),
  source: z.string().optional(),
  connection: anyObject,
});
const versionRef = z.object({ id: z.string(), version: z.number() });

/** Validates one connection as a file would be: schema, templates and rule values. */
export function validateConnection(input: unknown): { connection?: Connection; issues: ConfigIssue[] } {
  const result = connectionSchema.safeParse(input);
  if (!result.success) return { issues: zodIssues(result.error) };
  const issues = [...checkTemplates(result.data), ...checkRuleValues(result.data)];
  return issues.length ? { issues } : { connection: result.data, issues: [] };
}

function invalid(issues: ConfigIssue[], prefix = ''): InputError {
  const fields = Object.fromEntries(issues.map((i) => [`${prefix}${i.field || '(connection)'}`, i.reason]));
  return new InputError(`invalid connection: fix these fields: ${Object.keys(fields).join(', ')}`, fields);
}

function linkedCampaigns(connection: Connection): string[] | '*' {
  return connection.campaigns;
}

function present(record: StoredConnection) {
  return {
    version: record.version,
    updatedAt: record.updatedAt,
    ...(record.source ? { source: record.source } : {}),
    connection: record.connection as unknown as Record<string, unknown>,
  };
}

/** Connections: list, show, versions, diff, create, replace, enable/disable, delete, apply, links. */
export function registerConnectionRoutes(admin: AdminApp, deps: ConnectionAdminDeps): void {
  const { store } = deps;
  const mustGet = async (id: string) => {
    const found = await store.get(id);
    if (!found) throw new NotFoundError(`no connection ${id} (see connections list)`);
    return found;
  };
  /** A new version with `change` applied to the current connection. */
  const revise = async (id: string, change: (c: Connection) => Connection) => {
    const current = await mustGet(id);
    const { version, changed } = await store.put(change(structuredClone(current.connection)), ADMIN_SOURCE);
    return { id, version, changed, previousVersion: current.version };
  };
  const revision = z.object({
    id: z.string(),
    version: z.number(),
    changed: z.boolean(),
    previousVersion: z.number(),
  });

  admin.get(
    '/connections',
    {
      schema: {
        summary: 'List connections with their version and linked campaigns',
        tags: ['connections'],
        response: {
          200: z.object({
            connections: z.array(
              z.object({
                id: z.string(),
                account: z.string(),
                name: z.string(),
                enabled: z.boolean(),
                version: z.number(),
                campaigns: z.union([z.literal('*'), z.array(z.string())]),
                updatedAt: z.string(),
              }),
            ),
          }),
        },
      },
    },
    async () => ({
      connections: (await store.list()).map(({ connection, version, updatedAt }) => ({
        id: connection.id,
        account: connection.account,
        name: connection.name,
        enabled: connection.enabled,
        version,
        campaigns: linkedCampaigns(connection),
        updatedAt,
      })),
    }),
  );

  admin.get(
    '/connections/:id',
    {
      schema: {
        summary: 'Show a connection as stored now, with its version and linked campaigns',
        tags: ['connections'],
        params: idParams,
        response: {
          200: stored.extend({ campaigns: z.union([z.literal('*'), z.array(z.string())]) }),
          404: errorBody,
        },
      },
    },
    async (request) => {
      const record = await mustGet(request.params.id);
      return { ...present(record), campaigns: linkedCampaigns(record.connection) };
    },
  );

  admin.get(
    '/connections/:id/versions',
    {
      schema: {
        summary: 'Every stored version of a connection, oldest first (history outlives a delete)',
        tags: ['connections'],
        params: idParams,
        response: {
          200: z.object({
            versions: z.array(
              z.object({
                version: z.number(),
                updatedAt: z.string(),
                source: z.string().optional(),
                enabled: z.boolean(),
              }),
            ),
          }),
          404: errorBody,
        },
      },
    },
    async (request) => {
      const all = await store.versions(request.params.id);
      if (all.length === 0) throw new NotFoundError(`connection ${request.params.id} has no versions`);
      return {
        versions: all.map((v) => ({
          version: v.version,
          updatedAt: v.updatedAt,
          ...(v.source ? { source: v.source } : {}),
          enabled: v.connection.enabled,
        })),
      };
    },
  );

  admin.get(
    '/connections/:id/versions/:n',
    {
      schema: {
        summary: 'One version of a connection',
        tags: ['connections'],
        params: z.object({ id: z.string().min(1), n: z.coerce.number().int().min(1) }),
        response: { 200: stored, 404: errorBody },
      },
    },
    async (request) => {
      const record = await store.getVersion(request.params.id, request.params.n);
      if (!record)
        throw new NotFoundError(`connection ${request.params.id} has no version ${request.params.n}`);
      return present(record);
    },
  );

  admin.get(
    '/connections/:id/diff',
    {
      schema: {
        summary: 'Per-field diff between two versions of a connection',
        tags: ['connections'],
        params: idParams,
        querystring: z.object({ from: z.coerce.number().int().min(1), to: z.coerce.number().int().min(1) }),
        response: {
          200: z.object({
            id: z.string(),
            from: z.number(),
            to: z.number(),
            changes: z.array(
              z.object({ path: z.string(), from: z.unknown().optional(), to: z.unknown().optional() }),
            ),
          }),
          404: errorBody,
        },
      },
    },
    async (request) => {
      const { id } = request.params;
      const [a, b] = await Promise.all([
        store.getVersion(id, request.query.from),
        store.getVersion(id, request.query.to),
      ]);
      if (!a) throw new NotFoundError(`connection ${id} has no version ${request.query.from}`);
      if (!b) throw new NotFoundError(`connection ${id} has no version ${request.query.to}`);
      return { id, from: a.version, to: b.version, changes: diffConnections(a.connection, b.connection) };
    },
  );

  admin.post(
    '/connections',
    {
      schema: {
        summary: 'Create a connection (validated like a connection file)',
        tags: ['connections'],
        body: anyObject,
        response: { 201: versionRef, 400: errorBody, 409: errorBody },
      },
    },
    async (request, reply) => {
      const { connection, issues } = validateConnection(request.body);
      if (!connection) throw invalid(issues);
      if (await store.get(connection.id))
        throw new ConflictError(
          `connection ${connection.id} exists; use PUT /connections/${connection.id} to change it`,
        );
      const { version } = await store.put(connection, ADMIN_SOURCE);
      await deps.campaigns.addAccount(connection.account);
      request.log.info({ connectionId: connection.id, version }, 'connection created');
      return reply.code(201).send({ id: connection.id, version });
    },
  );

  admin.put(
    '/connections/:id',
    {
      schema: {
        summary: 'Replace a connection (a change makes a new version)',
        tags: ['connections'],
        params: idParams,
        body: anyObject,
        response: { 200: revision, 400: errorBody, 404: errorBody },
      },
    },
    async (request) => {
      const { id } = request.params;
      const { connection, issues } = validateConnection({ ...request.body, id: request.body.id ?? id });
      if (!connection) throw invalid(issues);
      if (connection.id !== id)
        throw new InputError('the body\u2019s id must match the URL', { id: `must be ${id}` });
      return revise(id, () => connection);
    },
  );

  for (const action of ['enable', 'disable'] as const) {
    admin.post(
      `/connections/:id/${action}`,
      {
        schema: {
          summary: `${action === 'enable' ? 'Enable' : 'Disable'} a connection (a new version)`,
          tags: ['connections'],
          params: idParams,
          response: { 200: revision, 404: errorBody },
        },
      },
      async (request) => revise(request.params.id, (c) => ({ ...c, enabled: action === 'enable' })),
    );
  }

  admin.delete(
    '/connections/:id',
    {
      schema: {
        summary: 'Delete a connection; its pending deliveries fail as CONNECTION_MISSING (replayable)',
        tags: ['connections'],
        params: idParams,
        response: { 204: z.null(), 404: errorBody },
      },
    },
    async (request, reply) => {
      if (!(await store.remove(request.params.id)))
        throw new NotFoundError(`no connection ${request.params.id} (see connections list)`);
      request.log.warn({ connectionId: request.params.id }, 'connection deleted');
      return reply.code(204).send(null);
    },
  );

  admin.post(
    '/apply',
    {
      schema: {
        summary:
          'Apply a set of connections, all or nothing; answers what was created, changed, unchanged, removed',
        tags: ['connections'],
        body: z
          .object({ connections: z.array(z.unknown()).max(1000), prune: z.boolean().default(false) })
          .strict(),
        response: {
          200: z.object({
            created: z.array(versionRef),
            changed: z.array(z.object({ id: z.string(), from: z.number(), to: z.number() })),
            unchanged: z.array(versionRef),
            removed: z.array(versionRef),
          }),
          400: errorBody,
        },
      },
    },
    async (request) => {
      const issues: Array<ConfigIssue & { index: number }> = [];
      const valid: Connection[] = [];
      const seen = new Map<string, number>();
      request.body.connections.forEach((input, index) => {
        const result = validateConnection(input);
        issues.push(...result.issues.map((issue) => ({ ...issue, index })));
        if (!result.connection) return;
        const other = seen.get(result.connection.id);
        if (other !== undefined) {
          issues.push({
            index,
            field: 'id',
            reason: `"${result.connection.id}" is already used by connections[${other}]`,
          });
          return;
        }
        seen.set(result.connection.id, index);
        valid.push(result.connection);
      });
      if (issues.length > 0) {
        const fields = Object.fromEntries(
          issues.map((i) => [`connections[${i.index}]${i.field ? `.${i.field}` : ''}`, i.reason]),
        );
        throw new InputError(
          `${issues.length} problem(s) found; nothing was applied: ${Object.keys(fields).join(', ')}`,
          fields,
        );
      }
      const diff = await applyConnectionSet(store, valid, request.body.prune);
      for (const account of new Set(valid.map((c) => c.account))) await deps.campaigns.addAccount(account);
      request.log.info(
        { created: diff.created.length, changed: diff.changed.length, removed: diff.removed.length },
        'connections applied',
      );
      return diff;
    },
  );

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
      const result = await revise(request.params.id, (c) =>
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
      const result = await revise(id, (c) => ({
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
