import { z } from 'zod';

/** An accepted unsubscribe, as stored in the ledger and carried by every delivery job. */
export const unsubscribeSchema = z.object({
  id: z.uuid(),
  account: z.string(),
  email: z.string(),
  campaign: z.string().optional(),
  occurredAt: z.string().optional(),
  receivedAt: z.string(),
  source: z.string().optional(),
  attributes: z.record(z.string(), z.string()),
  /** `advertiser` when it came in with a key of the advertiser's own systems (see connection `echo`). */
  origin: z.enum(['platform', 'advertiser']).optional(),
});
export type UnsubscribeOrigin = NonNullable<Unsubscribe['origin']>;
export type Unsubscribe = z.infer<typeof unsubscribeSchema>;

/** How addresses compare (suppression lookups, the duplicate window, hashed logs): case and surrounding space do not matter. */
export function emailKey(email: string): string {
  return email.trim().toLowerCase();
}
