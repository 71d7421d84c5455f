import type { Command } from 'commander';
import { parseEnv } from '../../config/env.js';
import { connectionJsonSchemaText } from '../../config/json-schema.js';
import { checkConnectionFiles } from '../../config/load-connections.js';
import { loadSecrets } from '../../config/secrets.js';
import { ConnectionConfigError, formatConfigIssue, UnsubRelayError } from '../../errors.js';
import { createLogger } from '../../logging.js';
import { formatRequest, renderPreview } from '../render-command.js';
import { print } from '../shared.js';

/** `validate --strict` found warnings: fix them (set the secrets, encode the headers) or drop --strict. */
class WarningsRefused extends UnsubRelayError {
  readonly code = 'VALIDATE_WARNINGS';
  constructor(count: number) {
    super(`${count} warning(s) and --strict: fix them, or validate without --strict`);
  }
}

/** Commands that work on this machine's files or run the engine; they need no running engine. */
export function registerLocalCommands(program: Command): void {
  program
    .command('start')
    .description('run the engine: ingest API and delivery workers (configured by environment, see README)')
    .action(async () => {
      const env = parseEnv();
      const logger = createLogger(env.LOG_LEVEL, env.LOG_FORMAT);
      // Loaded only here: operator commands start faster without the engine's whole dependency tree.
      const { startEngine } = await import('../../engine.js');
      const engine = await startEngine(env, logger);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          // A second signal: the operator does not want to wait.
          logger.warn({ signal }, 'second signal: exiting now');
          process.exit(1);
        }
        stopping = true;
        logger.info({ signal }, 'shutting down: no new requests, letting in-flight deliveries finish');
        void engine.close().then(() => {
          logger.info('stopped cleanly');
          process.exit(0);
        });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });

  program
    .command('validate')
    .description(
      'check every connection file; lists each problem with file, field and reason, and warns about unset secrets and free text in headers',
    )
    .argument('[dir]', 'directory of connection files', process.env.CONNECTIONS_DIR ?? './connections')
    .option('--strict', 'fail on warnings too (exit 1)')
    .option('--json', 'machine-readable output on stdout, problems and warnings included')
    .action(async (dir: string, options: { json?: boolean; strict?: boolean }) => {
      const { loaded, issues, warnings } = await checkConnectionFiles(dir, { secrets: loadSecrets() });
      const refusedWarnings = options.strict === true && warnings.length > 0;
      const ok = issues.length === 0 && !refusedWarnings;
      if (options.json) {
        print(
          {
            ok,
            connections: loaded.map(({ connection, file }) => ({ id: connection.id, file })),
            problems: issues,
            warnings,
          },
          true,
          () => '',
        );
        if (!ok) process.exitCode = 1;
        return;
      }
      if (warnings.length > 0)
        process.stderr.write(`${warnings.map((w) => `warning: ${formatConfigIssue(w)}`).join('\n')}\n`);
      if (issues.length > 0) throw new ConnectionConfigError(issues);
      process.stdout.write(
        `${[
          ...loaded.map(({ connection, file }) => `ok  ${connection.id}  (${file})`),
          `${loaded.length} connection(s) valid${warnings.length > 0 ? `, ${warnings.length} warning(s)` : ''}`,
        ].join('\n')}\n`,
      );
      if (refusedWarnings) throw new WarningsRefused(warnings.length);
    });

  program
    .command('render')
    .description(
      'print the exact request a connection would send for an unsubscribe (secrets redacted); sends nothing',
    )
    .argument('<connection>', 'connection id')
    .requiredOption('--email <email>', 'the unsubscribed address')
    .option('--campaign <campaign>', 'campaign of the unsubscribe')
    .option('--source <source>', 'source of the unsubscribe')
    .option('--attempt <n>', 'attempt number', (v) => Number.parseInt(v, 10), 1)
    .option('--dir <dir>', 'directory of connection files', process.env.CONNECTIONS_DIR ?? './connections')
    .option('--json', 'machine-readable output')
    .action(
      async (
        id: string,
        options: {
          email: string;
          campaign?: string;
          source?: string;
          attempt: number;
          dir: string;
          json?: boolean;
        },
      ) => {
        const preview = await renderPreview(id, options);
        print(preview, !!options.json, () =>
          [
            ...(preview.tokenRequest
              ? [
                  '# token request (OAuth2 client credentials, sent first and cached)',
                  formatRequest(preview.tokenRequest),
                  '',
                ]
              : []),
            formatRequest(preview.request),
            ...(preview.missingSecrets.length
              ? ['', `# secrets not set here (placeholders used): ${preview.missingSecrets.join(', ')}`]
              : []),
          ].join('\n'),
        );
      },
    );

  program
    .command('schema')
    .description(
      'print the JSON Schema of connection files (for editors; committed as schema/connection.schema.json)',
    )
    .action(() => {
      process.stdout.write(connectionJsonSchemaText());
    });
}
