import type { FastifyRequest } from 'fastify';

/**
 * Who acted, for the records of replays, pauses, moves and discards: `X-Operator` (the CLI sends
 * the login name), else `admin-api`, since the admin token itself is shared and names no one.
 */
export function operatorOf(request: FastifyRequest): string {
  const operator = request.headers['x-operator'];
  return (Array.isArray(operator) ? operator[0] : operator)?.trim().slice(0, 100) || 'admin-api';
}
