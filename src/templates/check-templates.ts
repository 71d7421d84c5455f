import type { Connection } from '../config/connection-schema.js';
import type { ConfigIssue } from '../errors.js';
import { compileConnectionParts, templateSources } from './compile-connection.js';
import {
  isSecretNameAllowed,
  sampleContext,
  templateData,
  type SecretSource,
  type TemplateContext,
} from './context.js';
import { tokenRequestWith } from './render-auth.js';
import { renderWith } from './render-delivery.js';
import { checkReasonTemplates } from './render-reason.js';
import { didYouMean } from './suggest.js';
import { secretNamesIn } from './template-env.js';
import { urlHostProblem } from './url-host.js';

const placeholderSecrets: SecretSource = { get: (name) => `placeholder-secret-${name}` };
/** Dry runs fetch nothing, so OAuth2 connections render with a stand-in token. */
const placeholderToken = { accessToken: 'placeholder-oauth2-access-token' };
/**
 * Attributes vary per unsubscribe, so the full sample carries them under names no template reads
 * directly: the body of an `{{#each attributes}}` (and anything nested in it) then runs at
 * validation, as it will at every delivery whose unsubscribe has attributes. One is empty, so both
 * sides of an `{{#if this}}` / `{{#unless this}}` inside the loop run too (the property test found
 * `{{#unless this}}{{email}}{{/unless}}`, out of scope in the loop, passing with only set values).
 */
const sampleAttributes = {
  'sample-attribute': 'sample value',
  'other-attribute': 'other value',
  'empty-attribute': '',
};

/**
 * Validates every template of a connection without sending anything: compiles, then renders
 * with sample unsubscribes (with and without the optional fields and attributes) and placeholder secrets, so
 * unknown variables and helpers show up at `validate`, not at delivery. Covers the OAuth2 token
 * request and the HMAC signature too. Issues name the field; the caller adds the file.
 */
export function checkTemplates(connection: Connection): ConfigIssue[] {
  const { compiled, issues } = compileConnectionParts(connection);
  if (!compiled) return issues;
  const bare = sampleContext(connection);
  const full: TemplateContext = {
    ...bare,
    campaign: Array.isArray(connection.campaigns)
      ? (connection.campaigns[0] ?? 'sample-campaign')
      : 'sample-campaign',
    occurredAt: bare.receivedAt,
    source: 'api',
    attributes: { ...sampleAttributes },
  };
  // One reason per field: the second sample often trips over the same mistake differently.
  const seen = new Set<string>();
  const variables = knownVariables(connection);
  const report = (field: string, reason: string) => {
    if (!seen.has(field)) issues.push({ field, reason: withSuggestion(reason, variables) });
    seen.add(field);
  };
  const auth = connection.request.auth;
  const urls: Array<[string, string]> = [['request.url', connection.request.url]];
  if (auth.type === 'oauth2_client_credentials') urls.push(['request.auth.tokenUrl', auth.tokenUrl]);
  for (const [field, source] of urls) {
    const problem = urlHostProblem(source, connection.settings);
    if (problem) report(field, problem);
  }
  for (const { field, source, maxBytes } of templateSources(connection)) {
    for (const name of secretNamesIn(source, { maxBytes })) {
      if (!isSecretNameAllowed(name)) {
        report(
          field,
          `{{secret '${name}'}}: ${name} is the engine's own setting or a system variable, not a connection secret`,
        );
      }
    }
  }
  for (const context of [bare, full]) {
    if (compiled.auth.type === 'oauth2_client_credentials') {
      tokenRequestWith(compiled.auth, templateData(context), placeholderSecrets, report);
    }
    renderWith(
      compiled,
      context,
      placeholderSecrets,
      report,
      placeholderToken,
      undefined,
      // A batched connection renders lists: check it with a batch of both samples.
      connection.batch ? [bare, full] : undefined,
    );
  }
  // Rule reasons are templates too (issue 18): checked where they are rendered.
  issues.push(...checkReasonTemplates(connection));
  return issues;
}

/** Names a template can look up, for "did you mean": the context's fields and the connection's settings. */
function knownVariables(connection: Connection): string[] {
  const context = Object.keys(sampleContext(connection));
  return [
    ...context,
    'batch',
    'size',
    'auth',
    'accessToken',
    'sandboxUrl',
    ...Object.keys(connection.settings),
  ];
}

/** `unknown variable "emial" (line 1, column 3)` gets `; did you mean "email"?` after it. */
function withSuggestion(reason: string, known: readonly string[]): string {
  const unknown = /^unknown variable "([^"]+)"/.exec(reason);
  if (!unknown || reason.includes('did you mean')) return reason;
  const suggestion = didYouMean(unknown[1]!, known);
  return `${reason}${suggestion}`;
}

/** Secret names a connection reads with `{{secret 'NAME'}}`, sorted, for "is everything set?" checks. */
export function referencedSecrets(connection: Connection): string[] {
  const names = new Set<string>();
  for (const { source, maxBytes } of templateSources(connection))
    for (const name of secretNamesIn(source, { maxBytes })) names.add(name);
  return [...names].sort();
}
