import { z } from 'zod';

/** Field types the connection schema and its auth schema share. */

export const slug = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_-]{0,62}$/,
    'use 1-63 lowercase letters, digits, "-" or "_", starting with a letter or digit',
  );

/** A Handlebars template string. Compiled and checked by the template module at load time. */
export const templateString = z
  .string()
  .min(1, 'must not be empty')
  .max(8_192, 'templates are limited to 8 KiB');

export const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'not a valid HTTP header name');
