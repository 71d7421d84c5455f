import { z } from 'zod';

/** The API's one error shape, for the OpenAPI document. */
export const errorBody = z.object({
  error: z.string(),
  message: z.string(),
  fields: z.record(z.string(), z.string()).optional(),
});

export const isoTime = z.iso.datetime({
  offset: true,
  error: 'must be an ISO 8601 date-time, e.g. 2026-11-23T10:00:00Z',
});
