import { Command, InvalidArgumentError, Option } from 'commander';
import { parseEnv } from '../config/env.js';
import { connectionJsonSchemaText } from '../config/json-schema.js';
import { loadConnections } from '../config/load-connections.js';
import { startEngine } from '../engine.js';
import {
  ConnectionConfigError,
  formatConfigIssue,
  InputError,
  NotFoundError,
  StartupError,
  UnsubRelayError,
} from '../errors.js';
import { createLogger } from '../logging.js';
import { deliveryStatus } from '../domain/delivery.js';
import { withContext, type RedisOptions } from './context.js';
import { formatRequest, renderPreview } from './render-command.js';
import { table } from './table.js';

const program = new Command('unsub-relay')
  .description('Exports unsubscribes to advertisers\u2019 CRMs in real time.')
  .addOption(
    new Option('--redis-url <url>', 'Redis to use').env('REDIS_URL').default('redis://127.0.0.1:6379'),
  )
  .addOption(
    new Option('--prefix <prefix>', 'Redis key prefix of the install').env('REDIS_PREFIX').default('ur'),
  )
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

const redisOptions = (): RedisOptions => {
  const { redisUrl, prefix } = program.opts<{ redisUrl: string; prefix: string }>();
  return { redisUrl, prefix };
};
const print = (value: unknown, json: boolean, human: () => string) =>
  process.stdout.write(`${json ? JSON.stringify(value, null, 2) : human()}\n`);

const parseTime = (value: string): Date => {
  const relative = /^(\d+)([mhd])$/.exec(value);
  if (relative) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as 'm' | 'h' | 'd'];
    return new Date(Date.now() - Number(relative[1]) * unit);
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime()))
    throw new InvalidArgumentError('use an ISO date-time (2026-11-23T10:00:00Z) or an age like 30m, 6h, 2d');
  return date;
};

program
  .command('start')
  .description('run the engine: ingest API and delivery workers (configured by environment, see README)')
  .action(async () => {
    const env = parseEnv();
    const logger = createLogger(env.LOG_LEVEL, env.LOG_FORMAT);
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
  .description('check every connection file; lists each problem with file, field and reason')
  .argument('[dir]', 'directory of connection files', process.env.CONNECTIONS_DIR ?? './connections')
  .option('--json', 'machine-readable output')
  .action(async (dir: string, options: { json?: boolean }) => {
    const loaded = await loadConnections(dir);
    print(
      { ok: true, connections: loaded.map(({ connection, file }) => ({ id: connection.id, file })) },
      !!options.json,
      () =>
        [
          ...loaded.map(({ connection, file }) => `ok  ${connection.id}  (${file})`),
          `${loaded.length} connection(s) valid`,
        ].join('\n'),
    );
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

const keys = program.command('keys').description('account API keys for the ingest API');
keys
  .command('create')
  .description('create an API key; the key is printed once, on the last line')
  .requiredOption('--account <id>', 'account the key belongs to')
  .action(async (options: { account: string }) => {
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(options.account)) {
      throw new InputError('--account: use 1-63 lowercase letters, digits, "-" or "_"');
    }
    await withContext(redisOptions(), async ({ apiKeys }) => {
      const { info, key } = await apiKeys.create(options.account);
      process.stderr.write(
        `created key ${info.id} for account ${info.account}; it is shown once, store it now:\n`,
      );
      process.stdout.write(`${key}\n`);
    });
  });
keys
  .command('list')
  .description('list API keys (ids and prefixes only; keys are never shown again)')
  .option('--json', 'machine-readable output')
  .action(async (options: { json?: boolean }) => {
    await withContext(redisOptions(), async ({ apiKeys }) => {
      const list = await apiKeys.list();
      print(list, !!options.json, () => table(list, ['id', 'account', 'prefix', 'createdAt']));
    });
  });
keys
  .command('revoke')
  .description('revoke an API key; requests with it are refused at once')
  .argument('<id>', 'key id (see keys list)')
  .action(async (id: string) => {
    await withContext(redisOptions(), async ({ apiKeys }) => {
      if (!(await apiKeys.revoke(id)))
        throw new NotFoundError(`no API key ${id}: see \`unsub-relay keys list\``);
      process.stdout.write(`revoked ${id}\n`);
    });
  });

const deliveries = program
  .command('deliveries')
  .description('delivery records: what happened to each unsubscribe per connection');
deliveries
  .command('list')
  .description('list deliveries, newest first')
  .addOption(new Option('--status <status>', 'only this status').choices(deliveryStatus.options))
  .option('--connection <id>', 'only this connection')
  .option('--since <time>', 'accepted at or after (ISO time, or 30m / 6h / 2d ago)', parseTime)
  .option('--limit <n>', 'at most this many', (v) => Number.parseInt(v, 10), 100)
  .option('--json', 'machine-readable output')
  .action(
    async (options: {
      status?: 'pending';
      connection?: string;
      since?: Date;
      limit: number;
      json?: boolean;
    }) => {
      await withContext(redisOptions(), async ({ deliveries: records }) => {
        const list = await records.list({
          ...(options.status ? { status: options.status } : {}),
          ...(options.connection ? { connection: options.connection } : {}),
          ...(options.since ? { since: options.since } : {}),
          limit: options.limit,
        });
        print(list, !!options.json, () =>
          table(list, ['id', 'status', 'connectionId', 'attemptsMade', 'createdAt', 'failedReason']),
        );
      });
    },
  );
deliveries
  .command('show')
  .description('one delivery with every attempt (requests redacted)')
  .argument('<id>', 'delivery id (<unsubscribe id>:<connection id>)')
  .option('--json', 'machine-readable output')
  .action(async (id: string, options: { json?: boolean }) => {
    await withContext(redisOptions(), async ({ deliveries: records }) => {
      const detail = await records.get(id);
      print(detail, !!options.json, () => {
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
  .action(async (options: { id?: string; connection?: string; since?: Date; json?: boolean }) => {
    if (!options.id === !options.connection)
      throw new InputError('give exactly one of --id <delivery> or --connection <id>');
    await withContext(redisOptions(), async ({ deliveries: records }) => {
      const replayed = options.id
        ? (await records.replay(options.id), [options.id])
        : await records.replayMatching({
            connection: options.connection!,
            ...(options.since ? { since: options.since } : {}),
          });
      print(
        { replayed },
        !!options.json,
        () =>
          `replayed ${replayed.length} deliver${replayed.length === 1 ? 'y' : 'ies'}${replayed.length ? `:\n${replayed.join('\n')}` : ''}`,
      );
    });
  });

try {
  await program.parseAsync(process.argv);
} catch (error) {
  process.exitCode = 1;
  if (error instanceof ConnectionConfigError) {
    process.stderr.write(
      `${error.issues.map(formatConfigIssue).join('\n')}\n${error.issues.length} problem(s) found; nothing was applied\n`,
    );
  } else if (error instanceof InputError || error instanceof NotFoundError || error instanceof StartupError) {
    process.stderr.write(`error: ${error.message}\n`);
  } else if (error instanceof UnsubRelayError) {
    process.stderr.write(`error (${error.code}): ${error.message}\n`);
  } else {
    throw error;
  }
}
