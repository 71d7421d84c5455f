/** The credential in an `Authorization` header, given raw (`<key>`) or as `Bearer <key>`. */
export function presentedCredential(header: string | undefined): string | undefined {
  const value = header?.trim();
  if (!value) return undefined;
  return value.replace(/^Bearer\s+/i, '') || undefined;
}
