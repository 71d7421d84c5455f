import { Command, Option } from 'commander';
import { ConnectionConfigError, formatConfigIssue, UnsubRelayError } from '../errors.js';
import { AdminApiError } from './admin-client.js';
import { registerConnectionCommands } from './commands/connections.js'; // issue 5
import { registerControlCommands } from './commands/control.js';
import { registerDeliveryCommands } from './commands/deliveries.js';
import { registerEventCommands } from './commands/events.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerLocalCommands } from './commands/local.js';
import { registerReplayCommands } from './commands/replay.js';
import { registerTestingCommands } from './commands/testing.js';
import { registerUnsubscribeCommands } from './commands/unsubscribes.js';

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
registerUnsubscribeCommands(program); // unsubscribes list, suppressions check, audit (issue 5)
registerTestingCommands(program); // test <connection> (issue 5)
registerReplayCommands(program); // replay by id or filter, replays (issue 5)
registerConnectionCommands(program); // connections, apply, link/unlink, campaigns, accounts (issue 5)
registerEventCommands(program); // events: the operational event log
registerControlCommands(program); // pause, resume, circuits, held backlogs (issue 6)

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
