import type { FastifyInstance, FastifyRequest } from 'fastify';
import { StoreUnavailableError } from '../errors.js';
import type { DeliveryProducer } from '../queue/producer.js';
import type { ApiKeyStore } from '../store/api-keys.js';
import type { ConnectionIndex } from '../store/connection-index.js';
import { sendError } from './errors.js';
import { checkUnsubscribeBody } from './unsubscribe-body.js';

export interface IngestDeps {
  apiKeys: ApiKeyStore;
  index: ConnectionIndex;
  producer: DeliveryProducer;
}

declare module 'fastify' {
  interface FastifyRequest {
    account?: string;
  }
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** `Authorization: <key>` (as the Nurture contract has it) or `Authorization: Bearer <key>`. */
function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization?.trim();
  if (!header) return undefined;
  return header.replace(/^Bearer\s+/i, '');
}

function acceptsJson(accept: string | undefined): boolean {
  if (!accept) return true;
  return accept
    .split(',')
    .map((part) => part.split(';')[0]!.trim().toLowerCase())
    .some((type) => type === 'application/json' || type === 'application/*' || type === '*/*');
}

/**
 * `POST /v1/unsubscribes`. Checks run before the body is even parsed, cheapest and most telling
 * first: key (401), Accept (406), Content-Type (415); then size (413, Fastify's body limit) and
 * the body itself (400). 201 only after Redis has the unsubscribe and its deliveries.
 */
export function registerIngestRoutes(app: FastifyInstance, deps: IngestDeps): void {
  app.post(
    '/v1/unsubscribes',
    {
      onRequest: async (request, reply) => {
        const key = presentedKey(request);
        if (!key) {
          return sendError(reply, 401, {
            error: 'unauthorized',
            message: 'send your account API key in the Authorization header',
          });
        }
        let account: string | undefined;
        try {
          account = await deps.apiKeys.verify(key);
        } catch (error) {
          request.log.error({ err: error }, 'API key lookup failed');
          return sendError(reply, 503, {
            error: 'unavailable',
            message: 'storage is unavailable; retry shortly',
          });
        }
        if (!account) {
          return sendError(reply, 401, {
            error: 'unauthorized',
            message: 'the API key is unknown or revoked',
          });
        }
        request.account = account;
        if (!acceptsJson(request.headers.accept)) {
          return sendError(reply, 406, {
            error: 'not_acceptable',
            message: 'this API answers in JSON: send Accept: application/json or */*',
          });
        }
        const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
        if (type !== 'application/json') {
          return sendError(reply, 415, {
            error: 'unsupported_media_type',
            message: 'send the body as JSON with Content-Type: application/json',
          });
        }
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
      const account = request.account!;
      const { body } = checked;
      const linked = deps.index.linked(account, body.campaign).map((stored) => stored.connection);
      try {
        const result = await deps.producer.accept({ account, ...body }, linked, idempotencyKey);
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
        request.log.error({ err: error }, 'unsubscribe not stored: Redis unavailable');
        reply.header('retry-after', '5');
        return sendError(reply, 503, {
          error: 'unavailable',
          message: 'the unsubscribe was NOT stored; retry shortly',
        });
      }
    },
  );
}
