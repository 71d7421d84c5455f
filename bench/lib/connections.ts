import { mkdtemp, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import type { Unsubscribe } from '../../src/domain/unsubscribe.js';

/** Account every bench connection belongs to (and whose API key the load generator uses). */
export const BENCH_ACCOUNT = 'bench';
/** The CRM's API key, handed to the engine as a secret (`{{secret 'BENCH_CRM_KEY'}}`). */
export const BENCH_CRM_KEY = 'bench-crm-key-0123456789abcdef';
export const CRM_KEY_HEADER = 'X-Api-Key';

/**
 * The delivery body. `scheduledAt` is when the load generator meant to send the unsubscribe (epoch
 * ms, carried in its attributes), so the CRM can measure scheduled → received; empty for backlogs.
 */
export const BODY_TEMPLATE = {
  email: '{{email}}',
  id: '{{id}}',
  campaign: "{{default campaign 'none'}}",
  unsubscribedAt: '{{receivedAt}}',
  scheduledAt: '{{attributes.scheduledAt}}',
  source: 'unsub-relay',
};

/** The same body built by hand, as the bare baseline sends it (no templates). */
export function baselineBody(unsubscribe: Unsubscribe): string {
  return JSON.stringify({
    email: unsubscribe.email,
    id: unsubscribe.id,
    campaign: unsubscribe.campaign ?? 'none',
    unsubscribedAt: unsubscribe.receivedAt,
    scheduledAt: unsubscribe.attributes.scheduledAt ?? '',
    source: 'unsub-relay',
  });
}

/**
 * A bench connection: JSON body, api_key auth from a secret, default response rules (none given),
 * linked to every campaign of the bench account, with the duplicate window and the circuit breaker
 * off (a scenario that wants them passes overrides). A future `batch: { maxSize, maxWait }` section
 * goes in `overrides` too.
 */
export function benchConnection(
  id: string,
  url: string,
  overrides: Partial<ConnectionInput> & Record<string, unknown> = {},
): ConnectionInput {
  return {
    id,
    account: BENCH_ACCOUNT,
    name: `Bench ${id}`,
    campaigns: '*',
    request: {
      method: 'POST',
      url,
      auth: { type: 'api_key', header: CRM_KEY_HEADER, value: "{{secret 'BENCH_CRM_KEY'}}" },
      body: { json: BODY_TEMPLATE },
    },
    dedupe: { window: 0 },
    circuit: { enabled: false },
    ...overrides,
  } as ConnectionInput;
}

/** Writes the connections as YAML files into a new directory under `parent`. */
export async function writeConnectionsDir(parent: string, connections: ConnectionInput[]): Promise<string> {
  const dir = await mkdtemp(path.join(parent, 'connections-'));
  for (const connection of connections)
    await writeFile(path.join(dir, `${connection.id}.yaml`), stringify(connection));
  return dir;
}
