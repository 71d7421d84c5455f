/** What a secret is replaced with wherever it would be shown. */
export const REDACTED = '[redacted]';

/**
 * Replaces every occurrence of every secret in `text`, longest first (so a secret that contains a
 * shorter one goes whole). When `text` was cut short (a bounded response body), a secret may have
 * been cut too: a trailing start of one (4 characters or more) is replaced as well.
 */
export function scrubSecrets(
  text: string,
  secrets: Iterable<string>,
  options: { truncated?: boolean } = {},
): string {
  const ordered = [...new Set(secrets)]
    .filter((secret) => secret.length > 0)
    .sort((a, b) => b.length - a.length);
  let out = ordered.reduce((acc, secret) => acc.split(secret).join(REDACTED), text);
  if (options.truncated) {
    for (const secret of ordered) {
      for (let k = secret.length - 1; k >= 4; k -= 1) {
        if (out.endsWith(secret.slice(0, k))) {
          out = `${out.slice(0, out.length - k)}${REDACTED}`;
          break;
        }
      }
    }
  }
  return out;
}
