import { z } from 'zod';
import { verdictNames } from '../../domain/delivery.js';
import { runConnectionTest } from '../../testing/run-test.js';
import type { AdminApp, AdminDeps } from './index.js';
import { errorBody } from './schemas.js';

const testBody = z
  .object({
    dryRun: z.boolean().optional(),
    email: z.string().min(3).max(254).optional(),
    campaign: z.string().min(1).max(256).optional(),
    attributes: z.record(z.string(), z.string()).optional(),
  })
  .strict();

const testRun = z.object({
  id: z.string(),
  connectionId: z.string(),
  connectionVersion: z.number(),
  at: z.string(),
  dryRun: z.boolean(),
  email: z.string(),
  campaign: z.string().optional(),
  request: z
    .object({
      method: z.string(),
      url: z.string(),
      headers: z.record(z.string(), z.string()),
      body: z.string().optional(),
    })
    .optional(),
  response: z
    .object({
      status: z.number(),
      headers: z.record(z.string(), z.string()),
      body: z.string(),
      bodyTruncated: z.boolean(),
    })
    .optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  verdict: verdictNames.optional(),
  rule: z.union([z.number(), z.literal('default')]).optional(),
  reason: z.string().optional(),
  durationMs: z.number(),
});

const idParams = z.object({ id: z.string().min(1) });

/** Connection test runs (issue 5, Settings → Test). Never deliveries: no job, attempt or ledger entry. */
export function registerTestingRoutes(admin: AdminApp, deps: Pick<AdminDeps, 'testing'>): void {
  admin.post(
    '/connections/:id/test',
    {
      schema: {
        summary: 'Render (and unless dryRun, send) a connection’s request for its testing settings',
        tags: ['connections'],
        params: idParams,
        body: testBody.default({}),
        response: { 200: testRun, 400: errorBody, 404: errorBody, 422: errorBody },
      },
    },
    async (request) => {
      const run = await runConnectionTest(deps.testing, request.params.id, request.body ?? {});
      request.log.info(
        { connectionId: run.connectionId, dryRun: run.dryRun, verdict: run.verdict },
        'connection tested by an operator',
      );
      return run;
    },
  );

  admin.get(
    '/connections/:id/tests',
    {
      schema: {
        summary: 'The last 20 test runs of a connection, newest first',
        tags: ['connections'],
        params: idParams,
        response: { 200: z.object({ tests: z.array(testRun) }) },
      },
    },
    async (request) => ({ tests: await deps.testing.runs.list(request.params.id) }),
  );
}
