import type { FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { connectionOriginSchema, describeOrigin } from '../../config/connection-origin.js';
import type { Connection, StoredConnection } from '../../config/connection-schema.js';
import { ConflictError, ConnectionChangedError, InputError, NotFoundError } from '../../errors.js';
import type { EventSink } from '../../events/operational-event.js';
import type { DeliveryProducer } from '../../queue/producer.js';
import type { CampaignStore } from '../../store/campaigns.js';
import { connectionConflictSchema, type ConnectionConflicts } from '../../store/connection-conflicts.js';
import { diffConnections, untilUnchanged, type ConnectionStore } from '../../store/connection-store.js';
import type { Keyspace } from '../../store/keys.js';
import { registerApplyRoutes } from './apply.js';
import { invalid, validateConnection } from './connection-validation.js';
import { registerLinkRoutes } from './connection-links.js';
import type { AdminApp } from './index.js';
import { operatorOf, originOf } from './operator.js';
import { errorBody } from './schemas.js';

/** What the connection, account and campaign routes need (issue 5). */
export interface ConnectionAdminDeps {
  store: ConnectionStore;
  campaigns: CampaignStore;
  producer: DeliveryProducer;
  redis: Redis;
  keys: Keyspace;
  /** Conflicts between connection files and the store that wait for an operator (issue 18). */
  conflicts: ConnectionConflicts;
  /** Where a new conflict found by `POST /apply` is reported. */
  events?: EventSink;
}

const idParams = z.object({ id: z.string().min(1) });
const anyObject = z.record(z.string(), z.unknown());
const stored = z.object({
  version: z.number(),
  updatedAt: z.string(),
  /** Where this version came from, in one line (`file connections/a.yaml (sha256 ...) via start`). */
  source: z.string(),
  origin: connectionOriginSchema.optional(),
  connection: anyObject,
});
const versionRef = z.object({ id: z.string(), version: z.number() });

function linkedCampaigns(connection: Connection): string[] | '*' {
  return connection.campaigns;
}

function present(record: StoredConnection) {
  return {
    version: record.version,
    updatedAt: record.updatedAt,
    source: describeOrigin(record.origin, record.source),
    ...(record.origin ? { origin: record.origin } : {}),
    connection: record.connection as unknown as Record<string, unknown>,
  };
}

export type Revise = (
  request: FastifyRequest,
  id: string,
  change: (c: Connection) => Connection,
) => Promise<{ id: string; version: number; changed: boolean; previousVersion: number }>;

/** Connections: list, show, versions, diff, create, replace, enable/disable, delete, apply, links. */
export function registerConnectionRoutes(admin: AdminApp, deps: ConnectionAdminDeps): void {
  const { store } = deps;
  const mustGet = async (id: string) => {
    const found = await store.get(id);
    if (found) return found;
    const deleted = await store.deleted(id);
    if (deleted)
      throw new NotFoundError(
        `connection ${id} was deleted by ${deleted.by} at ${deleted.at}; create it again (POST /connections) or apply its file with --force ${id}`,
      );
    throw new NotFoundError(`no connection ${id} (see connections list)`);
  };
  /** A new version with `change` applied to the current connection, recording who made it. */
  // Guarded by the version read: a change made meanwhile is redone on top of it.
  const revise: Revise = (request, id, change) =>
    untilUnchanged(async () => {
      const current = await mustGet(id);
      const { version, changed } = await store.put(
        change(structuredClone(current.connection)),
        originOf(request),
        { expectedVersion: current.version },
      );
      return { id, version, changed, previousVersion: current.version };
    });
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
          200: stored.extend({
            campaigns: z.union([z.literal('*'), z.array(z.string())]),
            /** A file change waiting for an operator (apply --force or an edited file). */
            conflict: connectionConflictSchema.optional(),
          }),
          404: errorBody,
        },
      },
    },
    async (request) => {
      const record = await mustGet(request.params.id);
      const conflict = await deps.conflicts.get(request.params.id);
      return {
        ...present(record),
        campaigns: linkedCampaigns(record.connection),
        ...(conflict ? { conflict } : {}),
      };
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
                source: z.string(),
                origin: connectionOriginSchema.optional(),
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
          source: describeOrigin(v.origin, v.source),
          ...(v.origin ? { origin: v.origin } : {}),
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
      // Expected version 0: none stored, so two creates at once cannot both win. A deleted one is
      // created again on purpose: its tombstone goes.
      const { version } = await store
        .put(connection, originOf(request), { expectedVersion: 0, undelete: true })
        .catch((error: unknown) => {
          if (!(error instanceof ConnectionChangedError)) throw error;
          throw new ConflictError(
            `connection ${connection.id} exists; use PUT /connections/${connection.id} to change it`,
          );
        });
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
      return revise(request, id, () => connection);
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
      async (request) => revise(request, request.params.id, (c) => ({ ...c, enabled: action === 'enable' })),
    );
  }

  admin.delete(
    '/connections/:id',
    {
      schema: {
        summary:
          'Delete a connection; it stays deleted (no file, restart or reconnect brings it back); its pending deliveries fail as CONNECTION_MISSING (replayable)',
        tags: ['connections'],
        params: idParams,
        response: { 204: z.null(), 404: errorBody },
      },
    },
    async (request, reply) => {
      const by = operatorOf(request);
      if (!(await store.remove(request.params.id, by)))
        throw new NotFoundError(`no connection ${request.params.id} (see connections list)`);
      request.log.warn({ connectionId: request.params.id, by }, 'connection deleted');
      return reply.code(204).send(null);
    },
  );

  registerApplyRoutes(admin, deps);
  registerLinkRoutes(admin, deps, { mustGet, revise, revision });
}
