import { z } from 'zod';
import { NotFoundError } from '../../errors.js';
import type { AdminApp, AdminDeps } from './index.js';
import { errorBody } from './schemas.js';

const slug = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'use 1-63 lowercase letters, digits, "-" or "_"');
const origin = z.enum(['platform', 'advertiser']);
const keyInfo = z.object({
  id: z.string(),
  account: z.string(),
  prefix: z.string(),
  createdAt: z.string(),
  origin,
});

/** Account API keys for the ingest API. A new key is shown once, in the creation answer only. */
export function registerKeyRoutes(admin: AdminApp, deps: Pick<AdminDeps, 'apiKeys'>): void {
  admin.post(
    '/keys',
    {
      schema: {
        summary: 'Create an API key for an account (the key is in this answer only)',
        tags: ['keys'],
        body: z.object({ account: slug, origin: origin.default('platform') }).strict(),
        response: { 201: keyInfo.extend({ key: z.string() }), 400: errorBody },
      },
    },
    async (request, reply) => {
      const { info, key } = await deps.apiKeys.create(request.body.account, request.body.origin);
      request.log.info({ keyId: info.id, account: info.account }, 'API key created');
      return reply.code(201).send({ ...info, key });
    },
  );

  admin.get(
    '/keys',
    {
      schema: {
        summary: 'List API keys (ids and prefixes only)',
        tags: ['keys'],
        response: { 200: z.object({ keys: z.array(keyInfo) }) },
      },
    },
    async () => ({ keys: await deps.apiKeys.list() }),
  );

  admin.delete(
    '/keys/:id',
    {
      schema: {
        summary: 'Revoke an API key; requests with it are refused at once',
        tags: ['keys'],
        params: z.object({ id: z.string().min(1) }),
        response: { 204: z.null(), 404: errorBody },
      },
    },
    async (request, reply) => {
      if (!(await deps.apiKeys.revoke(request.params.id)))
        throw new NotFoundError(`no API key ${request.params.id}`);
      request.log.info({ keyId: request.params.id }, 'API key revoked');
      return reply.code(204).send(null);
    },
  );
}
