import { TemplateProblem } from './problem.js';

/** Formats of `{{now FORMAT}}` and `{{date field FORMAT}}`; `iso` is the default. */
export const TIME_FORMATS = ['iso', 'rfc2822', 'epoch', 'epoch_ms'] as const;
export type TimeFormat = (typeof TIME_FORMATS)[number];

export function isTimeFormat(value: unknown): value is TimeFormat {
  return typeof value === 'string' && (TIME_FORMATS as readonly string[]).includes(value);
}

export function unknownFormat(format: unknown): string {
  return `unknown time format ${JSON.stringify(format)}; use ${TIME_FORMATS.map((f) => `'${f}'`).join(', ')}`;
}

/**
 * An instant as text (`iso`: `2024-05-01T10:00:00.000Z`; `rfc2822`: `Wed, 01 May 2024 10:00:00 +0000`)
 * or as a number (`epoch` seconds, `epoch_ms`), so a JSON leaf `'{{now 'epoch'}}'` stays a number.
 */
export function formatInstant(ms: number, format: unknown = 'iso'): string | number {
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) throw new TemplateProblem('the time is out of range');
  switch (format) {
    case 'iso':
      return date.toISOString();
    case 'rfc2822':
      // toUTCString is RFC 7231's IMF-fixdate; RFC 2822 wants a numeric zone instead of "GMT".
      return date.toUTCString().replace(/GMT$/, '+0000');
    case 'epoch':
      return Math.floor(ms / 1000);
    case 'epoch_ms':
      return Math.floor(ms);
    default:
      throw new TemplateProblem(unknownFormat(format));
  }
}

const ISO_DATE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?([Zz]|[+-]\d{2}(?::?\d{2})?))?$/;

/**
 * Milliseconds for an ISO 8601 date (`2024-05-01`, midnight UTC) or date-time with a zone
 * (`2024-05-01T12:00:00+02:00`), or `undefined`. Stricter than `Date.parse`, which rolls
 * `2024-02-31` over to March and reads a zoneless time in the server's local zone.
 */
export function parseIsoDate(text: string): number | undefined {
  const match = ISO_DATE.exec(text.trim());
  if (!match) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '0', zone] = match;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number) as number[];
  if (month! < 1 || month! > 12 || day! < 1 || hour! > 23 || minute! > 59 || second! > 59) return undefined;
  const date = new Date(0);
  date.setUTCFullYear(year!, month! - 1, day!);
  if (date.getUTCDate() !== day) return undefined; // rolled over: no such day in that month
  const millis = Math.floor(Number(`0.${fraction}`) * 1000);
  date.setUTCHours(hour!, minute!, second!, millis);
  const offset = offsetMinutes(zone);
  return offset === undefined ? undefined : date.getTime() - offset * 60_000;
}

function offsetMinutes(zone: string | undefined): number | undefined {
  if (zone === undefined || zone.toUpperCase() === 'Z') return 0;
  const digits = zone.slice(1).replace(':', '');
  const hours = Number(digits.slice(0, 2));
  const minutes = Number(digits.slice(2) || '0');
  if (hours > 23 || minutes > 59) return undefined;
  return (zone.startsWith('-') ? -1 : 1) * (hours * 60 + minutes);
}
