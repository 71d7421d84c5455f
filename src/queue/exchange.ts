import type { Connection } from '../config/connection-schema.js';
import type { RenderedRequest, SendOutcome, Verdict } from '../domain/delivery.js';
import type { OAuth2Tokens } from '../auth/oauth2.js';
import type { Sender } from '../http/sender.js';
import { classify, type ReasonOf } from '../rules/classify.js';
import { renderReason } from '../templates/render-reason.js';
import {
  renderRequest,
  renderTokenRequest,
  type CompiledConnection,
  type SecretSource,
  type TemplateContext,
} from '../templates/render-request.js';

export interface ExchangeDeps {
  sender: Sender;
  tokens: OAuth2Tokens;
  secrets: SecretSource;
  clock: () => number;
}

/** One HTTP exchange of a delivery and what it means. A refused OAuth2 token gets one resend. */
export interface Exchange {
  request: RenderedRequest;
  outcome: SendOutcome;
  verdict: Verdict;
  /** The exchange before a token refresh, when there was one (recorded as its own attempt). */
  refused?: { request: RenderedRequest; outcome: SendOutcome; verdict: Verdict };
  /** A batch's verdict per unsubscribe, in the batch's order (`verdict` is the first's). */
  verdicts: Verdict[];
}

/** The unsubscribes of one batched request, each with its rule-value resolver (per-item results). */
export interface BatchItems {
  contexts: readonly TemplateContext[];
  resolvers: readonly ((value: string) => string)[];
}

/**
 * Renders, sends and classifies. For OAuth2 connections the token comes from the shared cache; when
 * the CRM refuses it (a `refresh_auth` rule, or a 401 no rule claimed), the token is invalidated for
 * every worker, a new one is fetched (once, across workers) and the request is sent again within the
 * same attempt, so an expired token never spends a retry.
 */
export async function exchange(
  deps: ExchangeDeps,
  connection: Connection,
  compiled: CompiledConnection,
  context: TemplateContext,
  resolveRuleValue: (value: string) => string,
  batch?: BatchItems,
): Promise<Exchange> {
  // A batched connection always sends a list; a lone unsubscribe (a test run) is a batch of one.
  const items: BatchItems | undefined =
    batch ?? (connection.batch ? { contexts: [context], resolvers: [resolveRuleValue] } : undefined);
  const limits = {
    timeouts: connection.request.timeouts,
    maxResponseBytes: connection.request.maxResponseBytes,
  };
  const tokenRequest = renderTokenRequest(compiled, context, deps.secrets, { now: deps.clock });
  const policy =
    connection.request.auth.type === 'oauth2_client_credentials' ? connection.request.auth : undefined;

  const once = async () => {
    const token =
      tokenRequest && policy
        ? await deps.tokens.get(
            connection.id,
            tokenRequest,
            { refreshBeforeMs: policy.refreshBefore, defaultTtlMs: policy.defaultTtl },
            limits,
          )
        : undefined;
    const request = renderRequest(
      compiled,
      context,
      deps.secrets,
      token ? { accessToken: token.accessToken } : undefined,
      {
        now: deps.clock,
      },
      items?.contexts,
    );
    const outcome = await deps.sender.send(request, limits);
    const now = deps.clock();
    const size = items?.contexts.length ?? 1;
    const verdicts = (items?.resolvers ?? [resolveRuleValue]).map((resolve, index) => {
      // A rule's reason may be a template over this delivery and the answer (its own item in a batch).
      const reasonOf: ReasonOf | undefined =
        outcome.kind === 'response'
          ? (source, json, fallback) => {
              const parsed = json();
              return renderReason(
                source,
                items?.contexts[index] ?? context,
                {
                  status: outcome.status,
                  headers: outcome.headers,
                  body: parsed.isJson ? parsed.value : outcome.body,
                },
                { index, size },
                request.secrets,
                fallback,
              );
            }
          : undefined;
      const verdict = classify(connection.response.rules, outcome, now, resolve, reasonOf);
      return token && verdict.rule === 'default' && outcome.kind === 'response' && outcome.status === 401
        ? ({
            verdict: 'refresh_auth',
            rule: 'default',
            code: 'AUTH_REFUSED',
            reason: 'the CRM refused the OAuth2 token (401)',
          } satisfies Verdict)
        : verdict;
    });
    // One token for the whole request: if the CRM refused it for any item, refresh it for all.
    const refresh = verdicts.find((v) => v.verdict === 'refresh_auth');
    return { request, outcome, verdict: refresh ?? verdicts[0]!, verdicts, token: token?.accessToken };
  };

  const first = await once();
  if (first.verdict.verdict !== 'refresh_auth' || !tokenRequest || !first.token) return first;
  await deps.tokens.invalidate(connection.id, tokenRequest, first.token);
  const second = await once();
  // Refused again with a fresh token: the credentials are wrong, not stale; retrying cannot help.
  const final = (v: Verdict): Verdict =>
    v.verdict === 'refresh_auth'
      ? {
          verdict: 'fail',
          rule: v.rule,
          code: 'AUTH_REFUSED',
          reason: `${v.reason}, again with a fresh token`,
        }
      : v;
  return { ...second, verdict: final(second.verdict), verdicts: second.verdicts.map(final), refused: first };
}
