import type { RenderedRequest } from '../domain/delivery.js';
import { TemplateError } from '../errors.js';
import type { CompiledConnection } from './compile-connection.js';
import { templateData, type SecretSource, type TemplateContext } from './context.js';
import { tokenRequestWith } from './render-auth.js';
import { renderWith, type AccessToken } from './render-delivery.js';
import type { RenderOptions } from './render-state.js';

export { compileConnection, type CompiledConnection } from './compile-connection.js';
export { envSecrets, templateContext, type SecretSource, type TemplateContext } from './context.js';
export { checkTemplates, referencedSecrets } from './check-templates.js';
export { RENDER_BUDGET_MS, type RenderOptions } from './render-state.js';
export type { AccessToken } from './render-delivery.js';

const throwing =
  (compiled: CompiledConnection) =>
  (field: string, reason: string): never => {
    throw new TemplateError(compiled.connectionId, field, reason);
  };

/**
 * Renders the request for one unsubscribe. Pure: no I/O; secrets come from `secrets`, the OAuth2
 * token from `auth` (required for OAuth2 connections), clocks and uuids from `options`.
 * Throws `TemplateError(connectionId, field, reason)`; reasons never contain secret values.
 */
export function renderRequest(
  compiled: CompiledConnection,
  context: TemplateContext,
  secrets: SecretSource,
  auth?: AccessToken,
  options?: RenderOptions,
  batch?: readonly TemplateContext[],
): RenderedRequest {
  return renderWith(compiled, context, secrets, throwing(compiled), auth, options, batch);
}

/**
 * The OAuth2 token request of a connection, or `undefined` when its auth is not OAuth2. Rendered
 * with the same context as the delivery; fetching and caching the token is the caller's job.
 */
export function renderTokenRequest(
  compiled: CompiledConnection,
  context: TemplateContext,
  secrets: SecretSource,
  options?: RenderOptions,
): RenderedRequest | undefined {
  if (compiled.auth.type !== 'oauth2_client_credentials') return undefined;
  return tokenRequestWith(compiled.auth, templateData(context), secrets, throwing(compiled), options);
}
