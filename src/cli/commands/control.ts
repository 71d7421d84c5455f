import type { Command } from 'commander';
import type { Backlog as StoredBacklog } from '../../store/backlogs.js';
import { admin, print } from '../shared.js';
import { table } from '../table.js';
import type { ConnectionConflict } from '../../store/connection-conflicts.js';
import { formatConflict } from './apply.js';

interface Preview {
  wouldTake: number;
  sample: string[];
  sendingNow: number;
}

/** Deliveries a worker was sending, left to it: said, so an operator knows to run the command again. */
function sendingNowNote(sendingNow: number, verb: string): string {
  return sendingNow > 0
    ? `; ${sendingNow} being sent by a worker now are not taken: each ends delivered or back in the backlog (run ${verb} again for those)`
    : '';
}

/** A backlog as the admin API shows it: with the secrets its connection reads that are not set. */
type Backlog = StoredBacklog & { missingSecrets?: string[] };

function state(b: Backlog): string {
  if (b.connection !== 'active') return b.connection;
  if (b.queuePaused) return 'paused';
  // Every delivery would fail with TEMPLATE_ERROR until the secrets are set.
  return b.missingSecrets ? 'misconfigured' : 'active';
}

/** One line per connection: what an operator scans for first at 3 a.m. */
function rows(backlogs: Backlog[]) {
  return backlogs.map((b) => ({
    connection: b.connectionId,
    state: state(b),
    circuit: b.control.circuit,
    failures: b.control.consecutiveFailures,
    waiting: b.counts.waiting,
    paused: b.counts.paused,
    delayed: b.counts.delayed,
    active: b.counts.active,
    failed: b.counts.failed,
    oldestSec: Math.round(b.oldestPendingAgeSeconds),
  }));
}
const COLUMNS = [
  'connection',
  'state',
  'circuit',
  'failures',
  'waiting',
  'paused',
  'delayed',
  'active',
  'failed',
  'oldestSec',
];

function describe(b: Backlog): string {
  const lines = [table(rows([b]), COLUMNS)];
  if (b.missingSecrets)
    lines.push(`secrets not set: ${b.missingSecrets.join(', ')} (every delivery fails until they are)`);
  if (b.control.paused)
    lines.push(
      `paused by ${b.control.paused.by} at ${b.control.paused.at}: ${b.control.paused.reason || '-'}`,
    );
  if (b.control.openUntil) lines.push(`circuit open until ${b.control.openUntil} (then one probe)`);
  if (b.concurrency) lines.push(`at most ${b.concurrency} in flight across all workers`);
  return lines.join('\n');
}

/**
 * Delivery control (issue 6): `connections status|pause|resume|close-circuit` and
 * `backlog discard|move` for held deliveries of deleted, disabled or paused connections.
 */
export function registerControlCommands(program: Command): void {
  const connections =
    program.commands.find((command) => command.name() === 'connections') ??
    program.command('connections').description('connections');

  connections
    .command('status')
    .description('each connection\u2019s queue, pause and circuit (deleted connections with a backlog too)')
    .argument('[id]', 'one connection')
    .option('--json', 'machine-readable output')
    .action(async (id: string | undefined, options: { json?: boolean }, command: Command) => {
      const client = admin(command);
      // Files waiting for an operator (issue 18) are part of a connection's state: shown with it.
      const { conflicts } = await client.request<{ conflicts: ConnectionConflict[] }>('GET', '/conflicts');
      const conflictLines = (list: ConnectionConflict[]) =>
        list.length === 0
          ? ''
          : `\n\nconflicts (the file's change is not applied; edit the file or run apply --force <id>):\n${list.flatMap(formatConflict).join('\n')}`;
      if (id) {
        const one = await client.request<Backlog>('GET', `/connections/${encodeURIComponent(id)}/backlog`);
        const own = conflicts.filter((c) => c.id === id);
        print(
          own.length ? { ...one, conflict: own[0] } : one,
          options.json,
          () => describe(one) + conflictLines(own),
        );
        return;
      }
      const { backlogs } = await client.request<{ backlogs: Backlog[] }>('GET', '/backlogs');
      const unset = backlogs.filter((b) => b.missingSecrets);
      print(
        options.json ? { backlogs, conflicts } : backlogs,
        options.json,
        () =>
          [
            table(rows(backlogs), COLUMNS),
            ...unset.map((b) => `${b.connectionId}: secrets not set: ${b.missingSecrets!.join(', ')}`),
          ].join('\n') + conflictLines(conflicts),
      );
    });

  connections
    .command('pause')
    .description('stop deliveries to a connection in every worker; its backlog is kept')
    .argument('<id>', 'connection')
    .option('--reason <text>', 'why, for the record', '')
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { reason: string; json?: boolean }, command: Command) => {
      const after = await admin(command).request<Backlog>(
        'POST',
        `/connections/${encodeURIComponent(id)}/pause`,
        { reason: options.reason },
      );
      print(after, options.json, () => `paused ${id}\n${describe(after)}`);
    });

  // Actions that take only the connection and answer with its state afterwards.
  const actions = [
    {
      name: 'resume',
      path: 'resume',
      about: 'resume a paused connection; its backlog drains',
      done: 'resumed',
    },
    {
      name: 'close-circuit',
      path: 'circuit/close',
      about: 'close a connection\u2019s circuit by hand, when its CRM is known to be back',
      done: 'closed the circuit of',
    },
  ];
  for (const action of actions)
    connections
      .command(action.name)
      .description(action.about)
      .argument('<id>', 'connection')
      .option('--json', 'machine-readable output')
      .action(async (id: string, options: { json?: boolean }, command: Command) => {
        const after = await admin(command).request<Backlog>(
          'POST',
          `/connections/${encodeURIComponent(id)}/${action.path}`,
        );
        print(after, options.json, () => `${action.done} ${id}\n${describe(after)}`);
      });

  const backlog = program
    .command('backlog')
    .description(
      'deliveries held for a deleted, disabled or paused connection: move them elsewhere, or discard them',
    );

  backlog
    .command('discard')
    .description(
      'give up the held deliveries for good (each keeps a DISCARDED record); a preview without --yes',
    )
    .argument('<connection>', 'the connection whose backlog goes')
    .option('--reason <text>', 'why, for the record', '')
    .option('--include-failed', 'its failed deliveries too, not only the pending ones')
    .option('--yes', 'do it')
    .option('--json', 'machine-readable output')
    .action(
      async (
        id: string,
        options: { reason: string; includeFailed?: boolean; yes?: boolean; json?: boolean },
        command: Command,
      ) => {
        const result = await admin(command).request<
          Preview | { discarded: number; ids: string[]; sendingNow: number }
        >('POST', `/connections/${encodeURIComponent(id)}/backlog/discard`, {
          reason: options.reason,
          includeFailed: Boolean(options.includeFailed),
          confirm: Boolean(options.yes),
        });
        print(result, options.json, () =>
          'wouldTake' in result
            ? `would discard ${result.wouldTake} deliveries of ${id} (${result.sample.join(', ') || 'none'}); add --yes to do it${sendingNowNote(result.sendingNow, 'the discard')}`
            : `discarded ${result.discarded} deliveries of ${id}${sendingNowNote(result.sendingNow, 'the discard')}`,
        );
      },
    );

  backlog
    .command('move')
    .description('send the held deliveries to another connection instead; a preview without --yes')
    .argument('<connection>', 'the connection whose backlog moves')
    .requiredOption('--to <id>', 'the connection that delivers them')
    .option('--include-failed', 'its failed deliveries too, not only the pending ones')
    .option('--yes', 'do it')
    .option('--json', 'machine-readable output')
    .action(
      async (
        id: string,
        options: { to: string; includeFailed?: boolean; yes?: boolean; json?: boolean },
        command: Command,
      ) => {
        const result = await admin(command).request<
          Preview | { moved: number; alreadyThere: number; sendingNow: number }
        >('POST', `/connections/${encodeURIComponent(id)}/backlog/move`, {
          to: options.to,
          includeFailed: Boolean(options.includeFailed),
          confirm: Boolean(options.yes),
        });
        print(result, options.json, () =>
          'wouldTake' in result
            ? `would move ${result.wouldTake} deliveries of ${id} to ${options.to} (${result.sample.join(', ') || 'none'}); add --yes to do it${sendingNowNote(result.sendingNow, 'the move')}`
            : `moved ${result.moved} deliveries of ${id} to ${options.to}${result.alreadyThere ? ` (${result.alreadyThere} were there already)` : ''}${sendingNowNote(result.sendingNow, 'the move')}`,
        );
      },
    );
}
