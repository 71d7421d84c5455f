import type { Command } from 'commander';
import { InputError } from '../../errors.js';
import type { ReplayRecord } from '../../store/replays.js';
import { admin, parseCount, parseTime, print } from '../shared.js';

/** `replay`: one failed delivery, or many by filter with a preview and `--yes` (issue 5). */
export function registerReplayCommands(program: Command): void {
  program
    .command('replay')
    .description(
      'put failed deliveries back on the queue, re-rendered with the connection\u2019s current version (default) or as originally sent (--original)',
    )
    .option('--id <delivery>', 'one delivery')
    .option('--connection <id>', 'failed deliveries of this connection')
    .option('--campaign <campaign>', 'only unsubscribes for this campaign')
    .option('--error-code <code>', 'only failures with this code (HTTP_STATUS, NETWORK, DEADLINE_PASSED...)')
    .option('--since <time>', 'accepted at or after (ISO time, or 30m / 6h / 2d ago)', parseTime)
    .option('--until <time>', 'accepted at or before (ISO time, or 30m / 6h / 2d ago)', parseTime)
    .option('--original', 'resend with the connection version of the first attempt')
    .option('--rate <n>', 'at most this many per second (default 20)', parseCount)
    .option('--yes', 'a bulk replay: do it (without, only says how many it would replay)')
    .option('--json', 'machine-readable output')
    .action(
      async (
        options: {
          id?: string;
          connection?: string;
          campaign?: string;
          errorCode?: string;
          since?: string;
          until?: string;
          original?: boolean;
          rate?: number;
          yes?: boolean;
          json?: boolean;
        },
        command: Command,
      ) => {
        const bulk = Boolean(
          options.connection || options.campaign || options.errorCode || options.since || options.until,
        );
        if (!options.id === !bulk)
          throw new InputError(
            'give exactly one of --id <delivery> or a filter (--connection, --campaign, --error-code, --since, --until)',
          );
        const mode = options.original ? 'original' : 'rerender';
        const client = admin(command);
        if (options.id) {
          const { replayed } = await client.request<{ replayed: string[] }>('POST', '/replays/one', {
            id: options.id,
            mode,
          });
          print({ replayed }, options.json, () => `replayed ${replayed.join(', ')} (${mode})`);
          return;
        }
        const filter = {
          ...(options.connection ? { connection: options.connection } : {}),
          ...(options.campaign ? { campaign: options.campaign } : {}),
          ...(options.errorCode ? { errorCode: options.errorCode } : {}),
          ...(options.since ? { since: options.since } : {}),
          ...(options.until ? { until: options.until } : {}),
        };
        const body = { filter, mode, ...(options.rate ? { perSecond: options.rate } : {}) };
        if (!options.yes) {
          const preview = await client.request<{ wouldReplay: number; sample: string[] }>(
            'POST',
            '/replays',
            body,
          );
          print(
            preview,
            options.json,
            () =>
              `would replay ${preview.wouldReplay} failed deliver${preview.wouldReplay === 1 ? 'y' : 'ies'}${preview.sample.length ? `, e.g.:\n${preview.sample.join('\n')}` : ''}`,
          );
          if (preview.wouldReplay > 0) {
            process.stderr.write('nothing replayed: run again with --yes to replay them\n');
            process.exitCode = 1;
          }
          return;
        }
        const record = await client.request<ReplayRecord>('POST', '/replays', { ...body, confirm: true });
        if (!options.json) process.stderr.write(`recorded as replay ${record.id} (${record.mode})\n`);
        print(
          record,
          options.json,
          () =>
            `replayed ${record.count} deliver${record.count === 1 ? 'y' : 'ies'}${record.ids.length ? `:\n${record.ids.join('\n')}` : ''}`,
        );
      },
    );

  program
    .command('replays')
    .description('recorded bulk replays: who, when, filter, count')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }, command: Command) => {
      const { replays } = await admin(command).request<{ replays: ReplayRecord[] }>('GET', '/replays');
      print(replays, options.json, () =>
        replays.length
          ? replays
              .map((r) => `${r.when}  ${r.who}  ${r.mode}  ${r.count}  ${JSON.stringify(r.filter)}`)
              .join('\n')
          : 'no bulk replays recorded',
      );
    });
}
