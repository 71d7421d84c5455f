import type { FastifyInstance, FastifyRequest } from 'fastify';

/** The ingest body limit from the API contract; bigger bodies get 413 before they are parsed. */
export const INGEST_BODY_LIMIT_BYTES = 16 * 1024;
/** The admin API's default: `apply` sends every connection file at once (~3 KB each, up to 1,000). */
export const ADMIN_BODY_LIMIT_BYTES = 8 * 1024 * 1024;
/** What the sandbox CRM takes: a batched connection's request (50 items and more) is well over 16 KiB. */
export const SANDBOX_BODY_LIMIT_BYTES = 1024 * 1024;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What a caller whose body was over this route's limit should do; said in the 413. */
    bodyLimitAdvice?: string;
  }
}

/**
 * Gives every route registered in `scope` (an encapsulated plugin) `bytes` as its body limit and
 * `advice` for the 413, so each part of the API has the limit its bodies need.
 */
export function limitBodies(scope: FastifyInstance, bytes: number, advice: string): void {
  scope.addHook('onRoute', (route) => {
    route.bodyLimit ??= bytes;
    route.config = { ...(route.config ?? {}), bodyLimitAdvice: route.config?.bodyLimitAdvice ?? advice };
  });
}

/** ` (16 KiB)` for a round size, nothing otherwise. */
function roundSize(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return ` (${bytes / (1024 * 1024)} MiB)`;
  if (bytes % 1024 === 0) return ` (${bytes / 1024} KiB)`;
  return '';
}

/** The 413's sentence: which limit, on which route, and what to do. */
export function bodyTooLargeMessage(request: FastifyRequest, fallbackBytes: number): string {
  const limit = request.routeOptions.bodyLimit ?? fallbackBytes;
  const route = `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`;
  const advice = request.routeOptions.config?.bodyLimitAdvice ?? 'send a smaller body';
  return `the body is over the ${limit}-byte${roundSize(limit)} limit of ${route}; ${advice}`;
}
