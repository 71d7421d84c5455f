import { randomUUID } from 'node:crypto';
import type { Connection } from '../config/connection-schema.js';
import { loadConnections } from '../config/load-connections.js';
import { loadSecrets } from '../config/secrets.js';
import { NotFoundError } from '../errors.js';
import { redactRequest } from '../templates/redact.js';
import {
  compileConnection,
  renderRequest,
  renderTokenRequest,
  templateContext,
  type SecretSource,
} from '../templates/render-request.js';

export interface RenderOptions {
  dir: string;
  email: string;
  campaign?: string;
  source?: string;
  attempt: number;
}

export interface RenderedPreview {
  connection: string;
  tokenRequest?: ReturnType<typeof redactRequest>;
  request: ReturnType<typeof redactRequest>;
  missingSecrets: string[];
}

/**
 * Renders what a connection would send for one unsubscribe, without sending anything. Secrets that
 * are set are used (and shown redacted); missing ones are stood in for and listed, so an integration
 * engineer can check a connection before its credentials exist.
 */
export async function renderPreview(connectionId: string, options: RenderOptions): Promise<RenderedPreview> {
  const loaded = await loadConnections(options.dir);
  const found = loaded.find(({ connection }) => connection.id === connectionId);
  if (!found) {
    const known = loaded.map(({ connection }) => connection.id).join(', ') || 'none';
    throw new NotFoundError(`no connection "${connectionId}" in ${options.dir} (found: ${known})`);
  }
  const { connection } = found;
  const real = loadSecrets();
  const missing = new Set<string>();
  const secrets: SecretSource = {
    get(name) {
      const value = real.get(name);
      if (value !== undefined) return value;
      missing.add(name);
      return `missing-secret-${name}`;
    },
  };
  const context = templateContext(sampleUnsubscribe(connection, options), connection, options.attempt, {
    sandboxUrl: 'http://127.0.0.1:8080/sandbox/crm',
  });
  const compiled = compileConnection(connection);
  const tokenRequest = renderTokenRequest(compiled, context, secrets);
  const request = renderRequest(
    compiled,
    context,
    secrets,
    tokenRequest ? { accessToken: 'oauth2-access-token-fetched-at-delivery' } : undefined,
    undefined,
    // A batched connection sends lists; shown here as a batch of one.
    connection.batch ? [context] : undefined,
  );
  return {
    connection: connection.id,
    ...(tokenRequest ? { tokenRequest: redactRequest(tokenRequest) } : {}),
    request: redactRequest(request),
    missingSecrets: [...missing].sort(),
  };
}

function sampleUnsubscribe(connection: Connection, options: RenderOptions) {
  return {
    id: randomUUID(),
    account: connection.account,
    email: options.email,
    ...(options.campaign ? { campaign: options.campaign } : {}),
    ...(options.source ? { source: options.source } : {}),
    receivedAt: new Date().toISOString(),
    attributes: {},
  };
}

/** The request as an HTTP message, the way a CRM's docs show one. */
export function formatRequest(request: {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}): string {
  const headers = Object.entries(request.headers).map(([name, value]) => `${name}: ${value}`);
  return [`${request.method} ${request.url}`, ...headers, '', ...(request.body ? [request.body] : [])].join(
    '\n',
  );
}
