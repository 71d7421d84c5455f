import { writeFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { InputError } from '../../errors.js';
import { auditCsv, type AuditRow, type Suppression, type UnsubscribePage } from '../../store/unsubscribes.js';
import { admin, parseCount, parseTime, print, query } from '../shared.js';
import { table } from '../table.js';

const account = (value: string) => encodeURIComponent(value);

/** `unsubscribes list`, `suppressions check` and `audit`: the read side of the ledger, per account. */
export function registerUnsubscribeCommands(program: Command): void {
  const unsubscribes = program
    .command('unsubscribes')
    .description('an account\u2019s unsubscribes and what happened to each per connection');

  unsubscribes
    .command('list')
    .description('list an account\u2019s unsubscribes, newest first, with each delivery\u2019s status')
    .requiredOption('--account <account>', 'the account')
    .option('--email <email>', 'only this email (case-insensitive)')
    .option('--campaign <campaign>', 'only this campaign')
    .option('--since <time>', 'received at or after (ISO time, or 30m / 6h / 2d ago)', parseTime)
    .option('--until <time>', 'received at or before (ISO time, or 30m / 6h / 2d ago)', parseTime)
    .option('--limit <n>', 'at most this many', parseCount, 50)
    .option('--cursor <cursor>', 'the next page: the cursor printed after the previous one')
    .option('--json', 'machine-readable output')
    .action(
      async (
        options: {
          account: string;
          email?: string;
          campaign?: string;
          since?: string;
          until?: string;
          limit: number;
          cursor?: string;
          json?: boolean;
        },
        command: Command,
      ) => {
        const page = await admin(command).request<UnsubscribePage>(
          'GET',
          `/accounts/${account(options.account)}/unsubscribes${query({
            email: options.email,
            campaign: options.campaign,
            since: options.since,
            until: options.until,
            limit: options.limit,
            cursor: options.cursor,
          })}`,
        );
        print(page, options.json, () => {
          const rows = page.unsubscribes.map((u) => ({
            ...u,
            deliveries: u.deliveries.map((d) => `${d.connectionId}=${d.status}`),
          }));
          const text = table(rows, ['id', 'receivedAt', 'email', 'campaign', 'deliveries']);
          return page.nextCursor ? `${text}\nmore: --cursor ${page.nextCursor}` : text;
        });
      },
    );

  program
    .command('suppressions')
    .description('suppression lookups')
    .command('check')
    .description('is this email unsubscribed for this account, and since when')
    .requiredOption('--account <account>', 'the account')
    .argument('<email>', 'the email address (case-insensitive)')
    .option('--json', 'machine-readable output')
    .action(async (email: string, options: { account: string; json?: boolean }, command: Command) => {
      const result = await admin(command).request<Suppression>(
        'GET',
        `/accounts/${account(options.account)}/suppressions/${encodeURIComponent(email)}`,
      );
      print(result, options.json, () =>
        result.suppressed
          ? `${email} is suppressed for ${options.account} since ${result.since} (unsubscribes: ${result.unsubscribeIds.join(', ')})`
          : `${email} is not suppressed for ${options.account}`,
      );
    });

  program
    .command('audit')
    .description(
      'audit export: when each connection acknowledged each unsubscribe, for an email or a time range',
    )
    .requiredOption('--account <account>', 'the account')
    .option('--email <email>', 'every unsubscribe of this email')
    .option('--since <time>', 'received at or after (ISO time, or 30m / 6h / 2d ago)', parseTime)
    .option('--until <time>', 'with --since: received at or before', parseTime)
    .addOption(new Option('--format <format>', 'output format').choices(['csv', 'json']).default('csv'))
    .option('--output <file>', 'write to this file instead of standard output')
    .action(
      async (
        options: {
          account: string;
          email?: string;
          since?: string;
          until?: string;
          format: 'csv' | 'json';
          output?: string;
        },
        command: Command,
      ) => {
        if (!options.email && !options.since)
          throw new InputError('give --email <email>, or a time range with --since <time> [--until <time>]');
        // JSON over the wire; CSV is rendered here by the same function the API's format=csv uses.
        const { rows } = await admin(command).request<{ rows: AuditRow[] }>(
          'GET',
          `/accounts/${account(options.account)}/audit${query({
            email: options.email,
            since: options.since,
            until: options.until,
            format: 'json',
          })}`,
        );
        const text = options.format === 'csv' ? auditCsv(rows) : `${JSON.stringify(rows, null, 2)}\n`;
        if (options.output) {
          await writeFile(options.output, text);
          process.stderr.write(`wrote ${rows.length} row(s) to ${options.output}\n`);
        } else {
          process.stdout.write(text);
        }
      },
    );
}
