import { Option, type Command } from 'commander';
import { operationalEventType, type OperationalEvent } from '../../events/operational-event.js';
import { admin, parseCount, parseTime, print, query } from '../shared.js';
import { table } from '../table.js';

export function registerEventCommands(program: Command): void {
  program
    .command('events')
    .description(
      'operational events, newest first: connections failing and recovering, circuits, pauses, exhausted deliveries',
    )
    .option('--connection <id>', 'only this connection')
    .addOption(new Option('--type <type>', 'only this type').choices(operationalEventType.options))
    .option('--since <time>', 'logged at or after (ISO time, or 30m / 6h / 2d ago)', parseTime)
    .option('--limit <n>', 'at most this many', parseCount, 100)
    .option('--json', 'machine-readable output')
    .action(
      async (
        options: { connection?: string; type?: string; since?: string; limit: number; json?: boolean },
        command: Command,
      ) => {
        const { events } = await admin(command).request<{ events: OperationalEvent[] }>(
          'GET',
          `/events${query({
            connection: options.connection,
            type: options.type,
            since: options.since,
            limit: options.limit,
          })}`,
        );
        print(events, options.json, () =>
          table(events, ['at', 'type', 'connectionId', 'deliveryId', 'message']),
        );
      },
    );
}
