import { InvalidArgumentError, type Command } from 'commander';
import { AdminClient } from './admin-client.js';

/** JSON for scripts (`--json`), a human rendering otherwise. */
export function print(value: unknown, json: boolean | undefined, human: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(value, null, 2) : human()}\n`);
}

/** `2026-11-23T10:00:00Z`, or an age: `30m`, `6h`, `2d` ago. */
export function parseTime(value: string): string {
  const relative = /^(\d+)([mhd])$/.exec(value);
  if (relative) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as 'm' | 'h' | 'd'];
    return new Date(Date.now() - Number(relative[1]) * unit).toISOString();
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw new InvalidArgumentError('use an ISO date-time (2026-11-23T10:00:00Z) or an age like 30m, 6h, 2d');
  }
  return date.toISOString();
}

export function parseCount(value: string): number {
  const n = Number.parseInt(value, 10);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('use a positive whole number');
  return n;
}

/** The admin API client for the command being run, from the global --admin-url / --admin-token. */
export function admin(command: Command): AdminClient {
  const { adminUrl, adminToken } = command.optsWithGlobals<{ adminUrl: string; adminToken?: string }>();
  return new AdminClient({ adminUrl, ...(adminToken ? { adminToken } : {}) });
}

/** A query string from defined values only. */
export function query(params: Record<string, string | number | undefined>): string {
  const entries = Object.entries(params).filter(
    (entry): entry is [string, string | number] => entry[1] !== undefined,
  );
  return entries.length
    ? `?${new URLSearchParams(entries.map(([k, v]): [string, string] => [k, String(v)])).toString()}`
    : '';
}
