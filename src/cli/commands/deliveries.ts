import { Option, type Command } from 'commander';
import type { Attempt } from '../../domain/delivery.js';
import { deliveryStatus } from '../../domain/delivery.js';
import { InputError } from '../../errors.js';
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
    .option('--limit <n>', 'at most this many', parseCount, 100)
    .option('--json', 'machine-readable output')
    .action(
      async (
        options: { status?: string; connection?: string; since?: string; limit: number; json?: boolean },
        command: Command,
      ) => {
        const { deliveries: list } = await admin(command).request<{ deliveries: DeliverySummary[] }>(
          'GET',
          `/deliveries${query({ status: options.status, connection: options.connection, since: options.since, limit: options.limit })}`,
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
      const detail = await admin(command).request<DeliverySummary & { attempts: Attempt[] }>(
        'GET',
        `/deliveries/${encodeURIComponent(id)}`,
      );
      print(detail, options.json, () => {
        const { attempts, ...summary } = detail;
        const head = Object.entries(summary).map(([k, v]) => `${k}: ${String(v)}`);
        const rows = attempts.map((a) => ({
          ...a,
          request: a.request ? `${a.request.method} ${a.request.url}` : '-',
        }));
        return [
          ...head,
          '',
          table(rows, [
            'number',
            'startedAt',
            'request',
            'status',
            'durationMs',
            'verdict',
            'errorCode',
            'reason',
          ]),
        ].join('\n');
      });
    });

  program
    .command('replay')
    .description(
      'put failed deliveries back on the queue (re-rendered with the connection\u2019s current version)',
    )
    .option('--id <delivery>', 'one delivery')
    .option('--connection <id>', 'every failed delivery of this connection')
    .option(
      '--since <time>',
      'with --connection: accepted at or after (ISO time, or 30m / 6h / 2d ago)',
      parseTime,
    )
    .option('--json', 'machine-readable output')
    .action(
      async (
        options: { id?: string; connection?: string; since?: string; json?: boolean },
        command: Command,
      ) => {
        if (!options.id === !options.connection)
          throw new InputError('give exactly one of --id <delivery> or --connection <id>');
        const client = admin(command);
        const { replayed } = options.id
          ? await client.request<{ replayed: string[] }>(
              'POST',
              `/deliveries/${encodeURIComponent(options.id)}/replay`,
            )
          : await client.request<{ replayed: string[] }>('POST', '/replay', {
              connection: options.connection,
              ...(options.since ? { since: options.since } : {}),
            });
        print(
          { replayed },
          options.json,
          () =>
            `replayed ${replayed.length} deliver${replayed.length === 1 ? 'y' : 'ies'}${replayed.length ? `:\n${replayed.join('\n')}` : ''}`,
        );
      },
    );
}
