import helmet, { type FastifyHelmetOptions } from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A route's own helmet options, where @fastify/helmet looks for them at request time. */
    helmet?: Omit<FastifyHelmetOptions, 'global'>;
  }
}

/**
 * The API answers JSON only: nothing in it may load, frame or run anything. (Helmet's other
 * defaults stay: nosniff, HSTS, no referrer, same-origin resource and opener policies, DENY frames.)
 */
const API_CSP = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'none'"],
    frameAncestors: ["'none'"],
    baseUri: ["'none'"],
    formAction: ["'none'"],
  },
};

/**
 * bull-board's page loads its own scripts, styles and icons from its base path and sets inline
 * styles; everything else (Google Fonts included: the page falls back to system fonts) is refused.
 */
const DASHBOARD_CSP = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'", "'unsafe-inline'"],
    imgSrc: ["'self'", 'data:'],
    fontSrc: ["'self'"],
    connectSrc: ["'self'"],
    objectSrc: ["'none'"],
    baseUri: ["'self'"],
    formAction: ["'self'"],
    frameAncestors: ["'none'"],
  },
};

/** Security headers on every answer; register before any route. */
export async function registerSecurityHeaders(app: FastifyInstance): Promise<void> {
  await app.register(helmet, { contentSecurityPolicy: API_CSP, frameguard: { action: 'deny' } });
}

/**
 * For an encapsulated scope holding the dashboard: its routes get the dashboard's CSP (read by
 * helmet from the route's config at request time).
 */
export function useDashboardPolicy(scope: FastifyInstance): void {
  scope.addHook('onRoute', (route) => {
    route.config = { ...(route.config ?? {}), helmet: { contentSecurityPolicy: DASHBOARD_CSP } };
  });
}

/** Admin answers carry operators' data (emails, keys, connections): no cache keeps them. */
export function noStore(scope: FastifyInstance): void {
  scope.addHook('onSend', async (_request, reply, payload) => {
    reply.header('cache-control', 'no-store');
    return payload;
  });
}
