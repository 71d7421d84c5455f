import { Option, type Command } from 'commander';
import type { Attempt, SharedRequest } from '../../domain/delivery.js';
import { deliveryStatus } from '../../domain/delivery.js';
import type { DeliverySummary } from '../../store/delivery-records.js';
import { admin, parseCount, parseTime, print, query } from '../shared.js';
import { table } from '../table.js';

export function registerDeliveryCommands(program: Command): void {
  const deliveries = program
    .command('deliveries')
    .description('delivery records: what happened to each unsubscribe per connection');

  deliveries
    .command('list')
    .description('list deliveries, newest first')
    .addOption(new Option('--status <status>', 'only this status').choices(deliveryStatus.options))
    .option('--connection <id>', 'only this connection')
    .option('--since <time>', 'accepted at or after (ISO time, or 30m / 6h / 2d ago)', parseTime)
    .option('--until <time>', 'accepted at or before (ISO time, or 30m / 6h / 2d ago)', parseTime)
    .option('--campaign <campaign>', 'only unsubscribes for this campaign')
    .option('--error-code <code>', 'only failures with this code (HTTP_STATUS, NETWORK, DEADLINE_PASSED...)')
    .option('--limit <n>', 'at most this many', parseCount, 100)
    .option('--json', 'machine-readable output')
    .action(
      async (
        options: {
          status?: string;
          connection?: string;
          since?: string;
          until?: string;
          campaign?: string;
          errorCode?: string;
          limit: number;
          json?: boolean;
        },
        command: Command,
      ) => {
        const { deliveries: list } = await admin(command).request<{ deliveries: DeliverySummary[] }>(
          'GET',
          `/deliveries${query({
            status: options.status,
            connection: options.connection,
            since: options.since,
            until: options.until,
            campaign: options.campaign,
            errorCode: options.errorCode,
            limit: options.limit,
          })}`,
        );
        print(list, options.json, () =>
          table(list, ['id', 'status', 'connectionId', 'attemptsMade', 'createdAt', 'failedReason']),
        );
      },
    );

  deliveries
    .command('show')
    .description('one delivery with every attempt (requests redacted)')
    .argument('<id>', 'delivery id (<unsubscribe id>:<connection id>)')
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      const detail = await admin(command).request<
        DeliverySummary & { attempts: Attempt[]; batchRequests?: Record<string, SharedRequest> }
      >('GET', `/deliveries/${encodeURIComponent(id)}`);
      print(detail, options.json, () => {
        const { attempts, batchRequests, ...summary } = detail;
        const head = Object.entries(summary).map(([k, v]) => `${k}: ${String(v)}`);
        const rows = attempts.map((a) => ({
          ...a,
          request: a.request ? `${a.request.method} ${a.request.url}` : '-',
          batch: a.batch ? `${a.batch.size} in ${a.batch.id}` : '-',
        }));
        return [
          ...head,
          '',
          table(rows, [
            'number',
            'startedAt',
            'request',
            // Only a batched connection's attempts say which request they travelled in.
            ...(attempts.some((a) => a.batch) ? ['batch'] : []),
            'status',
            'durationMs',
            'verdict',
            'errorCode',
            'reason',
          ]),
          ...sentBodies(attempts, batchRequests ?? {}),
        ].join('\n');
      });
    });
  // `replay` lives in ./replay.ts (issue 5: bulk replay by filter).
}

/**
 * What each attempt sent: its own body, or in a batch its own item and (once per request) the body
 * the batch shared, with the other deliveries' items left out.
 */
function sentBodies(attempts: readonly Attempt[], shared: Record<string, SharedRequest>): string[] {
  const lines: string[] = [];
  const shown = new Set<string>();
  const cut = (truncated: boolean | undefined) => (truncated ? ' (truncated)' : '');
  for (const a of attempts) {
    if (a.request?.body !== undefined)
      lines.push(`attempt ${a.number} body${cut(a.request.bodyTruncated)}: ${a.request.body}`);
    if (a.requestItem !== undefined)
      lines.push(`attempt ${a.number} item${cut(a.requestItemTruncated)}: ${a.requestItem}`);
    const request = a.batch ? shared[a.batch.id] : undefined;
    if (a.batch && request?.body !== undefined && !shown.has(a.batch.id)) {
      shown.add(a.batch.id);
      lines.push(`batch ${a.batch.id} shared body${cut(request.bodyTruncated)}: ${request.body}`);
    }
  }
  return lines.length > 0 ? ['', ...lines] : [];
}
