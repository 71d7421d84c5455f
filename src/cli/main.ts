import { Command, Option } from 'commander';
import { ConnectionConfigError, formatConfigIssue, UnsubRelayError } from '../errors.js';
import { AdminApiError } from './admin-client.js';
import { registerDeliveryCommands } from './commands/deliveries.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerLocalCommands } from './commands/local.js';

const program = new Command('unsub-relay')
  .description('Exports unsubscribes to advertisers\u2019 CRMs in real time.')
  .addOption(
    new Option('--admin-url <url>', 'the engine whose admin API operator commands use')
      .env('ADMIN_URL')
      .default(`http://127.0.0.1:${process.env.PORT ?? '8080'}`),
  )
  .addOption(
    new Option(
      '--admin-token <token>',
      'admin API token (default: .unsub-relay/admin-token of a local engine)',
    ).env('ADMIN_TOKEN'),
  )
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

registerLocalCommands(program);
registerKeyCommands(program);
registerDeliveryCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  process.exitCode = 1;
  if (error instanceof ConnectionConfigError) {
    process.stderr.write(
      `${error.issues.map(formatConfigIssue).join('\n')}\n${error.issues.length} problem(s) found; nothing was applied\n`,
    );
  } else if (error instanceof AdminApiError || error instanceof UnsubRelayError) {
    process.stderr.write(`error: ${error.message}\n`);
  } else {
    throw error;
  }
}
