import type { RenderedRequest } from '../domain/delivery.js';
import type { CompiledConnection } from './compile-connection.js';
import { batchTemplateData, templateData, type SecretSource, type TemplateContext } from './context.js';
import { applyAuth, signRequest } from './render-auth.js';
import { renderBatchBody, renderBody } from './render-body.js';
import { checkedUrl, startRendering, type Report } from './render-core.js';
import type { RenderOptions } from './render-state.js';
import { headerValueProblem } from '../http/header-rules.js';

/** An OAuth2 access token, fetched (and cached) by the caller before rendering. */
export interface AccessToken {
  accessToken: string;
}

/**
 * Renders the delivery request, reporting each failing field; see `renderRequest`. With `batch`
 * (a batched connection's unsubscribes), `$each` lists render once per item and everything else
 * sees the batch (settings, size), not any one unsubscribe.
 */
export function renderWith(
  compiled: CompiledConnection,
  context: TemplateContext,
  secrets: SecretSource,
  report: Report,
  auth?: AccessToken,
  options?: RenderOptions,
  batch?: readonly TemplateContext[],
): RenderedRequest {
  const oauth2 = compiled.auth.type === 'oauth2_client_credentials';
  const token = oauth2 && auth?.accessToken ? auth.accessToken : undefined;
  if (oauth2 && token === undefined) {
    report(
      'request.auth',
      'an oauth2_client_credentials connection renders with an access token; none was given',
    );
  }
  // Only OAuth2 connections have `auth` in their data; compiling refuses it everywhere else.
  const top = batch ? batchTemplateData(batch) : templateData(context);
  const data = token === undefined ? top : { ...top, auth: { accessToken: token } };
  const r = startRendering(
    data,
    secrets,
    options,
    report,
    batch ? batch.map((item) => templateData(item)) : [data],
  );
  if (token !== undefined) {
    // Revealed, not just sensitive: anything a helper derives from the token is then redacted too.
    r.state.revealed.add(token);
    r.sensitive.add(token);
  }

  const url = r.attempt(compiled.url.field, () => checkedUrl(r.text(compiled.url))) ?? '';
  const headers: Record<string, string> = {};
  for (const { name, value } of compiled.headers) {
    const rendered = r.attempt(value.field, () => r.header(value));
    if (rendered !== undefined) headers[name] = rendered;
  }
  applyAuth(compiled.auth, r, headers, token);

  let body: string | undefined;
  let batchBody: RenderedRequest['batchBody'];
  if (compiled.body) {
    if (batch && compiled.body.kind === 'json') {
      const parts = renderBatchBody(compiled.body.root, r);
      body = parts.body;
      batchBody = { items: parts.items, shared: parts.shared };
    } else body = renderBody(compiled.body, r);
    if (!Object.hasOwn(headers, 'content-type')) headers['content-type'] = compiled.body.contentType;
  }
  const request = { method: compiled.method, url, headers, ...(body !== undefined ? { body } : {}) };
  if (compiled.auth.type === 'hmac') signRequest(compiled.auth, r, request, context.id);
  checkHeaderValues(compiled, headers, report);
  // Read last: signing adds the HMAC secret.
  return { ...request, secrets: r.secrets(), ...(batchBody ? { batchBody } : {}) };
}

/**
 * The HTTP client refuses a header value it cannot send (a Unicode email or campaign rendered into
 * a header): that is this delivery's template problem, reported under the field it came from, and
 * must never reach the sender, where it would look like a CRM that is down.
 */
function checkHeaderValues(
  compiled: CompiledConnection,
  headers: Record<string, string>,
  report: Report,
): void {
  for (const [name, value] of Object.entries(headers)) {
    const problem = headerValueProblem(value);
    if (problem === undefined) continue;
    const field = compiled.headers.find((header) => header.name === name)?.value.field ?? 'request.auth';
    report(field, problem);
  }
}
