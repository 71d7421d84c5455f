import type { Command } from 'commander';
import type { TestRun } from '../../testing/run-test.js';
import { formatRequest } from '../render-command.js';
import { admin, print } from '../shared.js';

/** `test <connection>`: the seed's Settings → Test (issue 5). */
export function registerTestingCommands(program: Command): void {
  program
    .command('test')
    .description(
      'send a test unsubscribe to a connection (its `testing` settings) and show the request, response, matching rule and verdict; never counts as a delivery',
    )
    .argument('<connection>', 'connection id')
    .option('--dry-run', 'render the request only; send nothing')
    .option('--email <email>', 'test with this email instead of testing.email')
    .option('--campaign <campaign>', 'test with this campaign instead of testing.campaign')
    .option('--json', 'machine-readable output')
    .action(
      async (
        connection: string,
        options: { dryRun?: boolean; email?: string; campaign?: string; json?: boolean },
        command: Command,
      ) => {
        const run = await admin(command).request<TestRun>(
          'POST',
          `/connections/${encodeURIComponent(connection)}/test`,
          {
            ...(options.dryRun ? { dryRun: true } : {}),
            ...(options.email ? { email: options.email } : {}),
            ...(options.campaign ? { campaign: options.campaign } : {}),
          },
        );
        print(run, options.json, () => formatRun(run));
        // A test that did not succeed is a failure for scripts.
        if (!run.dryRun && run.verdict !== 'success' && run.verdict !== 'success_already_done')
          process.exitCode = 1;
      },
    );
}

/** A test run for people; `rule` is already numbered from 1, like the reason's "rule 1 (...) matched". */
export function formatRun(run: TestRun): string {
  const lines = [
    `connection ${run.connectionId} (version ${run.connectionVersion}), test email ${run.email}${run.dryRun ? ', dry run: nothing sent' : ''}`,
    '',
    '--- request (secrets redacted)',
    run.request ? formatRequest(run.request) : '(not rendered)',
  ];
  if (run.response) {
    const headers = Object.entries(run.response.headers).map(([name, value]) => `${name}: ${value}`);
    lines.push(
      '',
      `--- response: ${run.response.status} in ${run.durationMs} ms`,
      ...headers,
      '',
      run.response.body + (run.response.bodyTruncated ? '\n[truncated]' : ''),
    );
  }
  if (run.error) lines.push('', `--- no response: ${run.error.code}: ${run.error.message}`);
  if (run.verdict)
    lines.push(
      '',
      `rule: ${run.rule === 'default' || run.rule === undefined ? 'default (no rule matched)' : `${run.rule}`}`,
      `verdict: ${run.verdict}${run.reason ? ` (${run.reason})` : ''}`,
    );
  return lines.join('\n');
}
