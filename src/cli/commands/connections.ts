import type { Command } from 'commander';
import { UnsubRelayError } from '../../errors.js';
import { admin, parseCount, print } from '../shared.js';
import { table } from '../table.js';
import { registerApplyCommand } from './apply.js';

/** A refusal of the CLI itself (a missing --yes): exit non-zero with a message saying what to do. */
class CliRefusal extends UnsubRelayError {
  readonly code = 'CLI_REFUSED';
}

interface ConnectionRow {
  id: string;
  account: string;
  name: string;
  enabled: boolean;
  version: number;
  campaigns: string[] | '*';
  updatedAt: string;
}
interface Stored {
  version: number;
  updatedAt: string;
  source: string;
  connection: Record<string, unknown>;
  campaigns?: string[] | '*';
}
interface Revision {
  id: string;
  version: number;
  changed: boolean;
  previousVersion: number;
}
interface Campaign {
  id: string;
  name?: string;
  registeredAt: string;
  via: string;
  connections?: string[];
}

const enc = encodeURIComponent;
const revised = (r: Revision, what: string) =>
  r.changed
    ? `${r.id}: ${what} (version ${r.previousVersion} → ${r.version})`
    : `${r.id}: already ${what} (version ${r.version})`;

function version(value: string): number {
  return parseCount(value);
}

export function registerConnectionCommands(program: Command): void {
  const connections = program
    .command('connections')
    .description('connections in the shared store (versions, diff, enable, links)');

  connections
    .command('list')
    .description('list connections with their version and linked campaigns')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }, command: Command) => {
      const { connections: rows } = await admin(command).request<{ connections: ConnectionRow[] }>(
        'GET',
        '/connections',
      );
      print(rows, options.json, () =>
        table(rows, ['id', 'account', 'name', 'enabled', 'version', 'campaigns', 'updatedAt']),
      );
    });

  connections
    .command('show')
    .description('show a connection as stored now, or one of its versions')
    .argument('<id>', 'connection id')
    .option('--version <n>', 'an earlier version (see connections versions)', version)
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { version?: number; json?: boolean }, command: Command) => {
      const path = options.version
        ? `/connections/${enc(id)}/versions/${options.version}`
        : `/connections/${enc(id)}`;
      const record = await admin(command).request<Stored>('GET', path);
      print(record, options.json, () => {
        const c = record.connection;
        return [
          `${String(c.id)}  version ${record.version}  updated ${record.updatedAt}`,
          `source:    ${record.source}`,
          `account:   ${String(c.account)}`,
          `name:      ${String(c.name)}`,
          `enabled:   ${String(c.enabled)}`,
          `campaigns: ${Array.isArray(c.campaigns) ? c.campaigns.join(', ') || '(none)' : String(c.campaigns)}`,
          JSON.stringify(c, null, 2),
        ].join('\n');
      });
    });

  connections
    .command('versions')
    .description('every stored version of a connection, oldest first')
    .argument('<id>', 'connection id')
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      const { versions } = await admin(command).request<{ versions: Array<Record<string, unknown>> }>(
        'GET',
        `/connections/${enc(id)}/versions`,
      );
      print(versions, options.json, () => table(versions, ['version', 'updatedAt', 'enabled', 'source']));
    });

  connections
    .command('diff')
    .description('what changed between two versions of a connection, field by field')
    .argument('<id>', 'connection id')
    .requiredOption('--from <n>', 'older version', version)
    .requiredOption('--to <n>', 'newer version', version)
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { from: number; to: number; json?: boolean }, command: Command) => {
      const diff = await admin(command).request<{
        changes: Array<{ path: string; from?: unknown; to?: unknown }>;
      }>('GET', `/connections/${enc(id)}/diff?from=${options.from}&to=${options.to}`);
      const show = (v: unknown) => (v === undefined ? '(absent)' : JSON.stringify(v));
      print(diff, options.json, () =>
        diff.changes.length === 0
          ? `${id}: versions ${options.from} and ${options.to} are the same`
          : diff.changes.map((c) => `${c.path}: ${show(c.from)} → ${show(c.to)}`).join('\n'),
      );
    });

  for (const action of ['enable', 'disable'] as const) {
    connections
      .command(action)
      .description(`${action} a connection (a new version, on every worker at once)`)
      .argument('<id>', 'connection id')
      .option('--json', 'machine-readable output')
      .action(async (id: string, options: { json?: boolean }, command: Command) => {
        const result = await admin(command).request<Revision>('POST', `/connections/${enc(id)}/${action}`);
        print(result, options.json, () => revised(result, `${action}d`));
      });
  }

  connections
    .command('delete')
    .description('delete a connection; its pending deliveries fail as CONNECTION_MISSING (replayable)')
    .argument('<id>', 'connection id')
    .option('--yes', 'really delete it')
    .action(async (id: string, options: { yes?: boolean }, command: Command) => {
      if (!options.yes) throw new CliRefusal(`deleting ${id} needs --yes (its pending deliveries will fail)`);
      await admin(command).request('DELETE', `/connections/${enc(id)}`);
      process.stdout.write(`deleted ${id}\n`);
    });

  connections
    .command('unlinked')
    .description('the account\u2019s known campaigns this connection does not link yet')
    .argument('<id>', 'connection id')
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { json?: boolean }, command: Command) => {
      const result = await admin(command).request<{ account: string; unlinked: Campaign[] }>(
        'GET',
        `/connections/${enc(id)}/unlinked`,
      );
      print(result, options.json, () =>
        result.unlinked.length === 0
          ? `${id} links every known campaign of ${result.account}`
          : table(result.unlinked, ['id', 'name']),
      );
    });

  registerApplyCommand(program);

  program
    .command('link')
    .description(
      'link a campaign to a connection (a new version); --backfill also queues its existing unsubscribes',
    )
    .argument('<connection>', 'connection id')
    .argument('<campaign>', 'campaign id')
    .option(
      '--backfill',
      'queue deliveries of the campaign\u2019s existing unsubscribes (shows a count first)',
    )
    .option('--yes', 'confirm the backfill')
    .option('--rate <n>', 'backfill deliveries queued per second (default 50)', parseCount)
    .option('--json', 'machine-readable output')
    .action(
      async (
        connection: string,
        campaign: string,
        options: { backfill?: boolean; yes?: boolean; rate?: number; json?: boolean },
        command: Command,
      ) => {
        if (options.rate !== undefined && !options.backfill) throw new CliRefusal('--rate needs --backfill');
        const client = admin(command);
        const path = `/connections/${enc(connection)}/links`;
        if (options.backfill && !options.yes) {
          const preview = await client.request<{ wouldQueue: number }>('POST', path, {
            campaign,
            backfill: {},
          });
          print(
            preview,
            options.json,
            () => `linking ${campaign} to ${connection} would queue ${preview.wouldQueue} delivery(ies)`,
          );
          throw new CliRefusal(
            `nothing done: run again with --yes to link ${campaign} and queue ${preview.wouldQueue} delivery(ies)`,
          );
        }
        const result = await client.request<Revision & { queued?: number; alreadyQueued?: number }>(
          'POST',
          path,
          {
            campaign,
            ...(options.backfill
              ? { backfill: { confirm: true, ...(options.rate ? { perSecond: options.rate } : {}) } }
              : {}),
          },
        );
        print(result, options.json, () => {
          const line = revised(result, `linked ${campaign}`);
          return result.queued === undefined
            ? line
            : `${line}\nbackfill: queued ${result.queued}, ${result.alreadyQueued ?? 0} already queued before`;
        });
      },
    );

  program
    .command('unlink')
    .description('unlink a campaign from a connection (a new version)')
    .argument('<connection>', 'connection id')
    .argument('<campaign>', 'campaign id')
    .option('--json', 'machine-readable output')
    .action(async (connection: string, campaign: string, options: { json?: boolean }, command: Command) => {
      const result = await admin(command).request<Revision>(
        'DELETE',
        `/connections/${enc(connection)}/links/${enc(campaign)}`,
      );
      print(result, options.json, () => revised(result, `unlinked ${campaign}`));
    });

  const campaigns = program.command('campaigns').description('an account\u2019s campaigns');
  campaigns
    .command('list')
    .description('list an account\u2019s campaigns with the connections linking each')
    .requiredOption('--account <id>', 'account id')
    .option('--json', 'machine-readable output')
    .action(async (options: { account: string; json?: boolean }, command: Command) => {
      const { campaigns: rows } = await admin(command).request<{ campaigns: Campaign[] }>(
        'GET',
        `/accounts/${enc(options.account)}/campaigns`,
      );
      print(rows, options.json, () => table(rows, ['id', 'name', 'via', 'registeredAt', 'connections']));
    });
  campaigns
    .command('add')
    .description('register a campaign of an account')
    .requiredOption('--account <id>', 'account id')
    .argument('<campaign>', 'campaign id')
    .option('--name <name>', 'display name')
    .option('--json', 'machine-readable output')
    .action(
      async (
        campaign: string,
        options: { account: string; name?: string; json?: boolean },
        command: Command,
      ) => {
        const created = await admin(command).request<Campaign>(
          'POST',
          `/accounts/${enc(options.account)}/campaigns`,
          {
            id: campaign,
            ...(options.name ? { name: options.name } : {}),
          },
        );
        print(created, options.json, () => `campaign ${created.id} registered for ${options.account}`);
      },
    );

  const accounts = program.command('accounts').description('accounts');
  accounts
    .command('list')
    .description('list accounts with their campaign and connection counts')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }, command: Command) => {
      const { accounts: rows } = await admin(command).request<{ accounts: Array<Record<string, unknown>> }>(
        'GET',
        '/accounts',
      );
      print(rows, options.json, () => table(rows, ['id', 'campaigns', 'connections']));
    });
}
