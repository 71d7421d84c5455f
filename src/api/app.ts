import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
} from 'fastify';
import type { Logger } from 'pino';
import {
  hasZodFastifySchemaValidationErrors,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import { ConflictError, ConnectionConfigError, InputError, NotFoundError, TemplateError } from '../errors.js';
import { registerAdmin, type AdminDeps } from './admin/index.js';
import type { Readiness } from './admin/health.js';
import { sendError } from './errors.js';
import { registerIngestRoutes, type IngestDeps } from './ingest-routes.js';
import { registerSandboxRoutes } from './sandbox-routes.js';
import { registerSecurityHeaders } from './security-headers.js';
import { bodyTooLargeMessage, INGEST_BODY_LIMIT_BYTES } from './body-limits.js';
import type { Metrics } from '../observe/metrics.js';

export interface AppDeps extends IngestDeps {
  logger: Logger;
  /** Readiness checks, and with `detail` each connection's health: /readyz and the admin health view. */
  readiness: Readiness;
  /** Served at /metrics in the Prometheus text format. */
  metrics?: Metrics;
  sandbox: boolean;
  /** Present when ADMIN_TOKEN is set. */
  admin?: AdminDeps;
}

/** Errors Fastify raises before a handler runs, mapped to the API's own codes. */
const FRAMEWORK_ERRORS: Record<string, { status: number; error: string; message: string }> = {
  FST_ERR_CTP_INVALID_JSON_BODY: {
    status: 400,
    error: 'invalid_json',
    message: 'the body is not valid JSON',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    status: 400,
    error: 'invalid_json',
    message: 'the body is empty; send a JSON map with "email"',
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    status: 415,
    error: 'unsupported_media_type',
    message: 'send Content-Type: application/json',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    status: 400,
    error: 'invalid_request',
    message: 'Content-Length does not match the body',
  },
};

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // The default is ingest's, the public route's; the admin API and the sandbox set their own.
    bodyLimit: INGEST_BODY_LIMIT_BYTES,
    // One line per accepted unsubscribe is logged by the route; per-request access logs would double it.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    // A client that trickles its body cannot hold a connection (or a shutdown) open for long.
    requestTimeout: 30_000,
    connectionTimeout: 30_000,
    // Errors raised before routing (a malformed URL) get the API's error shape too.
    frameworkErrors: (error, _request, reply) => {
      void sendError(reply, 400, { error: 'invalid_request', message: error.message });
    },
    // Errors Node raises before Fastify sees a request (headers too large, malformed HTTP).
    clientErrorHandler: (error, socket) => {
      const status = (error as { code?: string }).code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      const body = JSON.stringify({
        error: status === 431 ? 'headers_too_large' : 'invalid_request',
        message: status === 431 ? 'request headers are too large' : 'malformed HTTP request',
      });
      if (socket.writable) {
        socket.end(
          `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
            `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        );
      } else socket.destroy();
    },
  });

  await registerSecurityHeaders(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (hasZodFastifySchemaValidationErrors(error)) {
      // Name the field itself (`status`, `attributes.a`), or the part of the request when it is whole.
      const fields = Object.fromEntries(
        error.validation.map((issue) => [
          issue.instancePath.slice(1).replace(/\//g, '.') || (error.validationContext ?? 'body'),
          issue.message ?? 'is not valid',
        ]),
      );
      return sendError(reply, 400, {
        error: 'invalid_request',
        message: `fix these fields: ${Object.keys(fields).join(', ')}`,
        fields,
      });
    }
    if (error instanceof NotFoundError)
      return sendError(reply, 404, { error: 'not_found', message: error.message });
    if (error instanceof ConflictError)
      return sendError(reply, 409, { error: 'conflict', message: error.message });
    // A connection's own problem (a missing secret, a template that cannot render) is the
    // operator's to fix, not the server's: 422 naming the connection, the field and the reason.
    if (error instanceof TemplateError) {
      const prefix = `connection ${error.connectionId}: ${error.field}: `;
      return sendError(reply, 422, {
        error: 'connection_misconfigured',
        message: `${error.message}; fix the connection and try again`,
        fields: {
          [error.field]: error.message.startsWith(prefix)
            ? error.message.slice(prefix.length)
            : error.message,
        },
      });
    }
    if (error instanceof ConnectionConfigError) {
      return sendError(reply, 422, {
        error: 'connection_misconfigured',
        message: error.message,
        fields: Object.fromEntries(
          error.issues.map((issue) => [issue.field || '(connection)', issue.reason]),
        ),
      });
    }
    if (error instanceof InputError) {
      return sendError(reply, 400, {
        error: 'invalid_request',
        message: error.message,
        ...(Object.keys(error.fields).length ? { fields: error.fields } : {}),
      });
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      return sendError(reply, 413, {
        error: 'payload_too_large',
        message: bodyTooLargeMessage(request, INGEST_BODY_LIMIT_BYTES),
      });
    const known = error.code ? FRAMEWORK_ERRORS[error.code] : undefined;
    if (known) return sendError(reply, known.status, { error: known.error, message: known.message });
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      return sendError(reply, error.statusCode, { error: 'invalid_request', message: error.message });
    }
    // Logged with its context, answered generically: internals are not for callers.
    request.log.error({ err: error, url: request.url }, 'unhandled error');
    return sendError(reply, 500, { error: 'internal', message: 'internal error; it has been logged' });
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, {
      error: 'not_found',
      message: `no route ${request.method} ${request.url.split('?')[0]}`,
    }),
  );

  app.get('/healthz', async () => ({ ok: true }));
  // Public, for load balancers: ready or not, nothing else (no connection ids, no Redis messages).
  // The checks and each connection's health are behind the admin token at GET /admin/v1/health.
  app.get('/readyz', async (_request, reply) => {
    const { checks } = await deps.readiness();
    const ok = Object.values(checks).every((check) => check.ok);
    return reply.code(ok ? 200 : 503).send({ ok });
  });
  const metrics = deps.metrics;
  if (metrics) {
    app.get('/metrics', async (_request, reply) =>
      reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
    );
    // Counted from the answer, so every way an ingest request ends (auth, body, Redis) is covered.
    app.addHook('onResponse', async (request, reply) => {
      if (request.routeOptions.url !== '/v1/unsubscribes' || request.method !== 'POST') return;
      if (reply.statusCode === 201) {
        // An idempotent retry answers 201 again for an unsubscribe already counted.
        if (!reply.getHeader('idempotent-replayed')) metrics.unsubscribesAccepted.inc();
      } else metrics.unsubscribesRejected.inc({ status: String(reply.statusCode) });
    });
  }

  registerIngestRoutes(app, deps);
  if (deps.sandbox) registerSandboxRoutes(app);
  if (deps.admin) await registerAdmin(app, { health: deps.readiness, ...deps.admin });
  return app;
}
