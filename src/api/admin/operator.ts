import type { FastifyRequest } from 'fastify';
import { ADMIN_CLIENTS } from '../../config/connection-origin.js';

/**
 * Who acted, for the records of replays, pauses, moves and discards: `X-Operator` (the CLI sends
 * the login name), else `admin-api`, since the admin token itself is shared and names no one.
 */
export function operatorOf(request: FastifyRequest): string {
  const operator = request.headers['x-operator'];
  return (Array.isArray(operator) ? operator[0] : operator)?.trim().slice(0, 100) || 'admin-api';
}

/** Where a change through the admin API came from, recorded with the version it makes. */
export function originOf(request: FastifyRequest): { via: 'api' | 'cli' | 'console'; by: string } {
  const client = request.headers['x-unsub-relay-client'];
  const name = (Array.isArray(client) ? client[0] : client)?.trim().toLowerCase();
  const via = (ADMIN_CLIENTS as readonly string[]).includes(name ?? '') ? (name as 'cli' | 'console') : 'api';
  return { via, by: operatorOf(request) };
}
