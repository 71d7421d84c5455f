import { z } from 'zod';

/**
 * What operators are told about without asking: a connection starting to fail or recovering, its
 * circuit opening and closing, a hand pause, a delivery that ran out of attempts or is close to its
 * deadline, a connection file that conflicts with changes made through the API. One schema for the event log, the admin API and the webhook body.
 */
export const operationalEventType = z.enum([
  'connection_failing',
  'connection_recovered',
  'circuit_opened',
  'circuit_half_open',
  'circuit_closed',
  'connection_paused',
  'connection_resumed',
  'rate_limited',
  'delivery_exhausted',
  'deadline_near',
  'connection_conflict',
]);
export type OperationalEventType = z.infer<typeof operationalEventType>;

export const operationalEventSchema = z.object({
  /** Assigned when the event is logged (the Redis stream entry id): unique and time-ordered. */
  id: z.string(),
  type: operationalEventType,
  /** ISO 8601 time the engine noticed it. */
  at: z.string(),
  connectionId: z.string(),
  deliveryId: z.string().optional(),
  unsubscribeId: z.string().optional(),
  /** One sentence for a person: what happened and, where it helps, what to do. Never a secret or an email. */
  message: z.string(),
  details: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
});
export type OperationalEvent = z.infer<typeof operationalEventSchema>;
export type OperationalEventInput = Omit<OperationalEvent, 'id' | 'at' | 'details'> & {
  details?: OperationalEvent['details'];
};

/**
 * Where the delivery path reports operational events. `emit` never throws and never blocks a
 * delivery: an event that cannot be logged is logged as a warning instead.
 */
export interface EventSink {
  emit(event: OperationalEventInput): void;
}

/** A sink that drops everything: for unit tests of modules that emit. */
export const noEvents: EventSink = { emit: () => undefined };
