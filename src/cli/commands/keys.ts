import { Option, type Command } from 'commander';
import { admin, print } from '../shared.js';
import { table } from '../table.js';

interface KeyInfo {
  id: string;
  account: string;
  prefix: string;
  createdAt: string;
  origin: string;
}

export function registerKeyCommands(program: Command): void {
  const keys = program.command('keys').description('account API keys for the ingest API');

  keys
    .command('create')
    .description('create an API key; the key is printed once, on the last line of stdout')
    .requiredOption('--account <id>', 'account the key belongs to')
    .addOption(
      new Option(
        '--origin <origin>',
        "whose systems use it: an advertiser's own unsubscribes are not echoed back to it",
      )
        .choices(['platform', 'advertiser'])
        .default('platform'),
    )
    .option('--json', 'machine-readable output')
    .action(async (options: { account: string; origin: string; json?: boolean }, command: Command) => {
      const created = await admin(command).request<KeyInfo & { key: string }>('POST', '/keys', {
        account: options.account,
        origin: options.origin,
      });
      if (options.json) return print(created, true, () => '');
      process.stderr.write(
        `created key ${created.id} for account ${created.account}; it is shown once, store it now:\n`,
      );
      process.stdout.write(`${created.key}\n`);
    });

  keys
    .command('list')
    .description('list API keys (ids and prefixes only; keys are never shown again)')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }, command: Command) => {
      const { keys: list } = await admin(command).request<{ keys: KeyInfo[] }>('GET', '/keys');
      print(list, options.json, () => table(list, ['id', 'account', 'origin', 'prefix', 'createdAt']));
    });

  keys
    .command('revoke')
    .description('revoke an API key; requests with it are refused at once')
    .argument('<id>', 'key id (see keys list)')
    .action(async (id: string, _options: unknown, command: Command) => {
      await admin(command).request('DELETE', `/keys/${encodeURIComponent(id)}`);
      process.stdout.write(`revoked ${id}\n`);
    });
}
