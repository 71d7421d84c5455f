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
  const ordered = longestFirst(secrets);
  let out = text;
  for (const secret of ordered) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
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

// A request's secrets are one array, scrubbed from its URL, every header and the answer: ordered once.
const orderedOf = new WeakMap<object, readonly string[]>();

/** The distinct non-empty secrets, longest first. */
function longestFirst(secrets: Iterable<string>): readonly string[] {
  const known = Array.isArray(secrets) ? orderedOf.get(secrets) : undefined;
  if (known) return known;
  const ordered = [...new Set(secrets)]
    .filter((secret) => secret.length > 0)
    .sort((a, b) => b.length - a.length);
  if (Array.isArray(secrets)) orderedOf.set(secrets, ordered);
  return ordered;
}
