import type { FastifyReply } from 'fastify';

/** The one error body shape of the HTTP API: a stable code, a sentence saying what to do, bad fields. */
export interface ErrorBody {
  error: string;
  message: string;
  fields?: Record<string, string>;
}

export function sendError(reply: FastifyReply, status: number, body: ErrorBody): FastifyReply {
  return reply.code(status).type('application/json').send(body);
}
