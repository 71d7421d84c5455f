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

/** `jane.doe@example.com` → `j***@example.com`: enough to recognise, not enough to harvest. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf('@');
  if (at <= 0) return '***';
  return `${email[0]}***${email.slice(at)}`;
}
