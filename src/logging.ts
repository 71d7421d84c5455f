import { emailKey } from './domain/unsubscribe.js';
import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';

/**
 * Fields that may carry credentials are censored wherever they appear in a log line, as a second
 * line of defence: code never logs a request's headers or an API key on purpose.
 */
const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'apiKey',
  '*.apiKey',
  'token',
  '*.token',
  'password',
  '*.password',
  'secret',
  '*.secret',
];

/**
 * JSON lines for machines (the default whenever output is not a terminal); readable lines when a
 * person runs `npm start` in a terminal. LOG_FORMAT=json|pretty overrides the guess.
 */
export function createLogger(level: string, format: 'json' | 'pretty' | 'auto' = 'auto'): Logger {
  const pretty = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  return pino({
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: 'unsub-relay' },
    ...(pretty
      ? {
          transport: {
            target: 'pino-pretty',
            options: { ignore: 'pid,hostname,service', translateTime: 'SYS:HH:MM:ss.l' },
          },
        }
      : {}),
  });
}

/**
 * How emails appear in log lines: `masked` (the default, `j***@example.com`: enough to recognise,
 * not enough to harvest) or `hashed` (`sha256:1f0e...`, the same for every line about one address,
 * so a search across lines finds them, and nothing readable). Never the address itself.
 */
export type EmailLogging = 'masked' | 'hashed';
let emailLogging: EmailLogging = 'masked';

export function configureEmailLogging(mode: EmailLogging): void {
  emailLogging = mode;
}

/** An email as log lines may show it (see `EmailLogging`). */
export function logEmail(email: string): string {
  if (emailLogging === 'hashed')
    return `sha256:${createHash('sha256').update(emailKey(email)).digest('hex').slice(0, 16)}`;
  return maskEmail(email);
}

/** `jane.doe@example.com` → `j***@example.com`: enough to recognise, not enough to harvest. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf('@');
  if (at <= 0) return '***';
  return `${email[0]}***${email.slice(at)}`;
}
