import { randomUUID } from 'node:crypto';
import type { Verdict } from '../domain/delivery.js';
import { scrubSecrets } from '../domain/scrub.js';
import { InputError, NotFoundError, UnsubRelayError } from '../errors.js';
import { exchange, type ExchangeDeps } from '../queue/exchange.js';
import { ruleValueResolver } from '../queue/rule-values.js';
import type { ConnectionStore } from '../store/connection-store.js';
import type { TestRunStore } from '../store/test-runs.js';
import { redactRequest } from '../templates/redact.js';
import { compileConnection, renderRequest, templateContext } from '../templates/render-request.js';

/** Bytes of response body shown by a test run. */
const BODY_BYTES = 4_096;

export interface TestOptions {
  dryRun?: boolean;
  email?: string;
  campaign?: string;
  attributes?: Record<string, string>;
}

export interface TestRun {
  id: string;
  connectionId: string;
  connectionVersion: number;
  at: string;
  dryRun: boolean;
  email: string;
  campaign?: string;
  /** Absent when rendering or the OAuth2 token failed before anything was sent. */
  request?: { method: string; url: string; headers: Record<string, string>; body?: string };
  response?: { status: number; headers: Record<string, string>; body: string; bodyTruncated: boolean };
  /** Set when nothing came back (network error, timeout, target refused by the SSRF guard). */
  error?: { code: string; message: string };
  verdict?: Verdict['verdict'];
  /** The matching rule, numbered from 1 as `validate`, the reasons and the docs count; or `default`. */
  rule?: number | 'default';
  reason?: string;
  durationMs: number;
}

export interface TestRunnerDeps extends ExchangeDeps {
  connections: ConnectionStore;
  runs: TestRunStore;
  engine: { sandboxUrl: string };
}

/** A verdict's rule index (0-based, into `response.rules`) as people count it. */
function ruleNumber(rule: Verdict['rule']): number | 'default' {
  return rule === 'default' ? rule : rule + 1;
}

/**
 * Settings → Test: renders the connection's request for its testing settings (overridable) and,
 * unless a dry run, sends it through the same exchange as real deliveries (OAuth2 token, sender
 * with the SSRF guard, response rules). Recorded as a test run only: no job, attempt or ledger entry.
 */
export async function runConnectionTest(
  deps: TestRunnerDeps,
  connectionId: string,
  options: TestOptions,
): Promise<TestRun> {
  const stored = await deps.connections.get(connectionId);
  if (!stored) throw new NotFoundError(`no connection ${connectionId}`);
  const { connection } = stored;
  const testing = connection.testing;
  const email = options.email ?? testing?.email;
  if (!email)
    throw new InputError(
      `connection ${connectionId} has no testing settings: add \`testing: { email: ... }\` to it, or pass an email`,
    );
  const campaign = options.campaign ?? testing?.campaign;
  const unsubscribe = {
    id: randomUUID(),
    account: connection.account,
    email,
    ...(campaign ? { campaign } : {}),
    ...(testing?.source ? { source: testing.source } : {}),
    receivedAt: new Date(deps.clock()).toISOString(),
    attributes: { ...(testing?.attributes ?? {}), ...(options.attributes ?? {}) },
  };
  const context = templateContext(unsubscribe, connection, 1, deps.engine);
  const compiled = compileConnection(connection);
  const base = {
    id: randomUUID(),
    connectionId,
    connectionVersion: stored.version,
    at: new Date(deps.clock()).toISOString(),
    dryRun: options.dryRun === true,
    email,
    ...(campaign ? { campaign } : {}),
  };
  let run: TestRun;
  if (options.dryRun) {
    // Rendering only: an OAuth2 token would mean a call to the CRM, so a stand-in is shown.
    const request = renderRequest(
      compiled,
      context,
      deps.secrets,
      connection.request.auth.type === 'oauth2_client_credentials'
        ? { accessToken: 'oauth2-access-token-fetched-at-send' }
        : undefined,
      { now: deps.clock },
      connection.batch ? [context] : undefined,
    );
    run = { ...base, request: redactRequest(request), durationMs: 0 };
  } else {
    const started = deps.clock();
    try {
      const result = await exchange(deps, connection, compiled, context, ruleValueResolver(context));
      const { request, outcome, verdict } = result;
      run = {
        ...base,
        request: redactRequest(request),
        ...(outcome.kind === 'response'
          ? {
              response: {
                status: outcome.status,
                headers: Object.fromEntries(
                  Object.entries(outcome.headers).map(([k, v]) => [k, scrubSecrets(v, request.secrets)]),
                ),
                body: scrubSecrets(outcome.body, request.secrets, {
                  truncated: outcome.bodyTruncated,
                }).slice(0, BODY_BYTES),
                bodyTruncated: outcome.bodyTruncated || outcome.body.length > BODY_BYTES,
              },
            }
          : { error: { code: outcome.code, message: outcome.message } }),
        verdict: verdict.verdict,
        rule: ruleNumber(verdict.rule),
        reason: verdict.reason,
        durationMs: Math.round(outcome.durationMs),
      };
    } catch (error) {
      if (!(error instanceof UnsubRelayError)) throw error;
      // Rendering or the OAuth2 token failed before the request reached the CRM.
      run = {
        ...base,
        error: { code: error.code, message: error.message },
        verdict: 'fail',
        rule: 'default',
        reason: error.message,
        durationMs: Math.round(deps.clock() - started),
      };
    }
  }
  await deps.runs.add(run);
  return run;
}
