import type { ConfigIssue } from '../errors.js';
import { templateSources } from '../templates/compile-connection.js';
import type { SecretSource } from '../templates/context.js';
import { freeTextHeaders } from '../templates/header-text.js';
import { secretNamesIn } from '../templates/template-env.js';
import type { Connection } from './connection-schema.js';

/**
 * What `validate` warns about in a connection that is valid: it loads, but some deliveries (or all)
 * will fail. `validate --strict` refuses these too.
 */
export interface ConfigWarning extends ConfigIssue {
  connection: string;
  kind: 'secret_not_set' | 'free_text_header';
  /** For `secret_not_set`: the secret's name (never its value). */
  secret?: string;
}

export function connectionWarnings(connection: Connection, secrets?: SecretSource): ConfigWarning[] {
  const warnings: ConfigWarning[] = [];
  if (secrets) {
    for (const { field, source, maxBytes } of templateSources(connection)) {
      for (const secret of secretNamesIn(source, { maxBytes })) {
        if (secrets.get(secret) !== undefined) continue;
        warnings.push({
          connection: connection.id,
          kind: 'secret_not_set',
          secret,
          field,
          reason: `secret ${secret} is not set (environment, SECRETS_FILE or SECRETS_DIR): connection ${connection.id} fails every delivery with TEMPLATE_ERROR until it is`,
        });
      }
    }
  }
  for (const { field, variable } of freeTextHeaders(connection)) {
    warnings.push({
      connection: connection.id,
      kind: 'free_text_header',
      field,
      reason: `{{${variable}}} goes into a header as it is: a value outside Latin-1 (jöhn@例え.jp) cannot be sent in a header; wrap it in urlencode, base64 or sha256`,
    });
  }
  return warnings;
}
