import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { UnsubscribeOrigin } from '../domain/unsubscribe.js';
import { StoreUnavailableError } from '../errors.js';
import type { DeliveryProducer } from '../queue/producer.js';
import type { ApiKeyStore } from '../store/api-keys.js';
import type { ConnectionIndex } from '../store/connection-index.js';
import { presentedCredential } from './credentials.js';
import { INGEST_BODY_LIMIT_BYTES } from './body-limits.js';
import { IngestDeadline } from './ingest-deadline.js';
import { sendError } from './errors.js';
import { checkUnsubscribeBody } from './unsubscribe-body.js';

export interface IngestDeps {
  apiKeys: ApiKeyStore;
  index: ConnectionIndex;
  producer: DeliveryProducer;
}

declare module 'fastify' {
  interface FastifyRequest {
    caller?: { account: string; origin: UnsubscribeOrigin };
    /** Ingest only: the Redis time this request has left. */
    ingestDeadline?: IngestDeadline;
  }
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** Does `Accept` allow JSON? A media range with `q=0` means "not this". */
function acceptsJson(accept: string | undefined): boolean {
  if (!accept) return true;
  return accept.split(',').some((part) => {
    const [range, ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    const refused = params.some((param) => /^q=0(\.0{0,3})?$/.test(param.replace(/\s+/g, '')));
    return !refused && (range === 'application/json' || range === 'application/*' || range === '*/*');
  });
}

/** The body must be plain UTF-8 JSON: no other charset, no compression (we would parse it wrongly). */
function contentProblem(request: FastifyRequest): string | undefined {
  const [type, ...params] = (request.headers['content-type'] ?? '')
    .split(';')
    .map((p) => p.trim().toLowerCase());
  if (type !== 'application/json') return 'send the body as JSON with Content-Type: application/json';
  const charset = params
    .find((p) => p.startsWith('charset='))
    ?.slice(8)
    .replace(/"/g, '');
  if (charset && charset !== 'utf-8' && charset !== 'utf8')
    return `send the body as UTF-8 (charset=${charset} is not accepted)`;
  const encoding = request.headers['content-encoding']?.trim().toLowerCase();
  if (encoding && encoding !== 'identity')
    return `send the body uncompressed (Content-Encoding: ${encoding} is not accepted)`;
  return undefined;
}

/**
 * `POST /v1/unsubscribes`. Checks run before the body is even parsed, cheapest and most telling
 * first: key (401), Accept (406), Content-Type (415); then size (413, Fastify's body limit) and
 * the body itself (400). 201 only after Redis has the unsubscribe and its deliveries.
 */
export function registerIngestRoutes(app: FastifyInstance, deps: IngestDeps): void {
  app.route({
    method: ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE'],
    url: '/v1/unsubscribes',
    handler: (_request, reply) =>
      sendError(reply.header('allow', 'POST'), 405, {
        error: 'method_not_allowed',
        message: 'send unsubscribes with POST',
      }),
  });
  app.post(
    '/v1/unsubscribes',
    {
      bodyLimit: INGEST_BODY_LIMIT_BYTES,
      config: { bodyLimitAdvice: 'send one unsubscribe per request, with its attributes under 16 KiB' },
      onRequest: async (request, reply) => {
        const key = presentedCredential(request.headers.authorization);
        if (!key) {
          return sendError(reply, 401, {
            error: 'unauthorized',
            message: 'send your account API key in the Authorization header',
          });
        }
        let caller: { account: string; origin: UnsubscribeOrigin } | undefined;
        const deadline = new IngestDeadline();
        request.ingestDeadline = deadline;
        try {
          caller = await deadline.run(deps.apiKeys.verify(key), false);
        } catch (error) {
          request.log.error({ err: error }, 'API key lookup failed');
          return sendError(reply.header('retry-after', '5'), 503, {
            error: 'unavailable',
            message: 'storage is unavailable; retry shortly',
          });
        }
        if (!caller) {
          return sendError(reply, 401, {
            error: 'unauthorized',
            message: 'the API key is unknown or revoked',
          });
        }
        request.caller = caller;
        if (!acceptsJson(request.headers.accept)) {
          return sendError(reply, 406, {
            error: 'not_acceptable',
            message: 'this API answers in JSON: send Accept: application/json or */*',
          });
        }
        const problem = contentProblem(request);
        if (problem) return sendError(reply, 415, { error: 'unsupported_media_type', message: problem });
        return undefined;
      },
    },
    async (request, reply) => {
      const checked = checkUnsubscribeBody(request.body);
      if (!checked.ok) {
        return sendError(reply, 400, {
          error: 'invalid_request',
          message: `fix these fields: ${Object.keys(checked.fields).join(', ')}`,
          fields: checked.fields,
        });
      }
      const idempotencyKey = request.headers['idempotency-key'];
      if (
        idempotencyKey !== undefined &&
        (typeof idempotencyKey !== 'string' || !IDEMPOTENCY_KEY.test(idempotencyKey))
      ) {
        return sendError(reply, 400, {
          error: 'invalid_request',
          message: 'Idempotency-Key must be 1-255 printable ASCII characters',
          fields: { 'Idempotency-Key': 'must be 1-255 printable ASCII characters' },
        });
      }
      const { account, origin } = request.caller!;
      const { body } = checked;
      // An advertiser's own unsubscribes go to its connections only where they ask for them (echo).
      const linked = deps.index
        .linked(account, body.campaign)
        .map((stored) => stored.connection)
        .filter((connection) => origin !== 'advertiser' || connection.echo);
      try {
        // Bounded as a whole, with what the key lookup left: a hanging Redis gets the caller a 503
        // within the deadline, never a 201 much later.
        const result = await request.ingestDeadline!.run(
          deps.producer.accept(
            { account, ...body, ...(origin === 'advertiser' ? { origin } : {}) },
            linked,
            idempotencyKey,
          ),
          true,
        );
        if (result.outcome === 'conflict') {
          return sendError(reply, 422, {
            error: 'idempotency_conflict',
            message:
              'this Idempotency-Key was already used with a different body; use a new key for a new unsubscribe',
          });
        }
        if (result.outcome === 'replayed') reply.header('idempotent-replayed', 'true');
        else
          request.log.info(
            { unsubscribeId: result.id, account, deliveries: result.deliveries },
            'unsubscribe accepted',
          );
        return reply.code(201).send({ id: result.id });
      } catch (error) {
        if (!(error instanceof StoreUnavailableError)) throw error;
        request.log.error(
          { err: error, maybeStored: error.maybeStored },
          'unsubscribe not confirmed: Redis unavailable',
        );
        reply.header('retry-after', '5');
        return sendError(reply, 503, {
          error: 'unavailable',
          // A lost answer cannot tell "not stored" from "stored": say so, and how to retry safely.
          message: !error.maybeStored
            ? 'the unsubscribe was not stored; retry shortly'
            : idempotencyKey
              ? 'storage did not confirm the unsubscribe; retry shortly with the same Idempotency-Key'
              : 'storage did not confirm the unsubscribe (it may still be stored); retry shortly, with an Idempotency-Key to make retries safe',
        });
      }
    },
  );
}
