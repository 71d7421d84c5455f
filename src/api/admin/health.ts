import { z } from 'zod';
import type { AdminApp } from './index.js';

const check = z.object({ ok: z.boolean(), detail: z.string().optional() });
const connectionHealth = z.object({
  status: z.enum([
    'healthy',
    'failing',
    'circuit_open',
    'probing',
    'paused',
    'misconfigured',
    'disabled',
    'deleted',
  ]),
  circuit: z.enum(['closed', 'open', 'half_open']),
  consecutiveFailures: z.number(),
  pending: z.number(),
  failed: z.number(),
  oldestPendingAgeSeconds: z.number(),
  paused: z.object({ by: z.string(), at: z.string(), reason: z.string() }).optional(),
  missingSecrets: z.array(z.string()).optional(),
});
const healthReport = z.object({
  ok: z.boolean(),
  checks: z.record(z.string(), check),
  connections: z.record(z.string(), connectionHealth).optional(),
});
export type HealthReport = z.infer<typeof healthReport>;
/** One connection's health: informative, never failing readiness (one CRM's trouble is not this process's). */
export type ConnectionHealth = z.infer<typeof connectionHealth>;

/** The process's readiness checks and, with `detail`, each connection's health. */
export type Readiness = (options?: { detail?: boolean }) => Promise<Omit<HealthReport, 'ok'>>;

/**
 * `GET /health`: what the public /readyz only summarises as ready or not — each check with its
 * detail, and each connection's health (one CRM's trouble never makes the process unready).
 */
export function registerHealthRoute(admin: AdminApp, readiness: Readiness): void {
  admin.get(
    '/health',
    {
      schema: {
        summary:
          "Readiness checks with their detail and each connection's health (paused, circuit, misconfigured: secrets not set)",
        tags: ['delivery control'],
        response: { 200: healthReport },
      },
    },
    async () => {
      const { checks, connections } = await readiness({ detail: true });
      const ok = Object.values(checks).every((c) => c.ok);
      return { ok, checks, ...(connections ? { connections } : {}) };
    },
  );
}
