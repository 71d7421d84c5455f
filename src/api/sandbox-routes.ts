import type { FastifyInstance } from 'fastify';
import { limitBodies, SANDBOX_BODY_LIMIT_BYTES } from './body-limits.js';

/** How many received requests the sandbox keeps (in memory, newest last). */
const KEEP = 100;

export interface SandboxRequest {
  receivedAt: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

/**
 * A stand-in CRM served by the engine itself, so `npm start` shows the whole path on a machine with
 * no internet: the demo connection delivers here. It is a sandbox: it answers 200 to everything and
 * keeps the last requests in memory. Turn it off in production with SANDBOX=off.
 */
export function registerSandboxRoutes(app: FastifyInstance): void {
  const received: SandboxRequest[] = [];
  app.register(
    async (sandbox) => {
      limitBodies(sandbox, SANDBOX_BODY_LIMIT_BYTES, 'the sandbox CRM takes requests up to 1 MiB');
      sandbox.post('/unsubscribes', async (request, reply) => {
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(request.headers)) {
          // Even a sandbox does not echo credentials back to whoever reads it.
          headers[name] = /^(authorization|x-api-key|api-key|cookie)$/i.test(name)
            ? '[redacted]'
            : String(value);
        }
        received.push({
          receivedAt: new Date().toISOString(),
          method: request.method,
          path: request.url,
          headers,
          body: request.body,
        });
        if (received.length > KEEP) received.shift();
        return reply.code(200).send({ ok: true, sandbox: true });
      });
      sandbox.get('/unsubscribes', async () => ({ sandbox: true, received }));
    },
    { prefix: '/sandbox/crm' },
  );
}
