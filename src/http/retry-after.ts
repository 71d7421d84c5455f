/**
 * `Retry-After` (RFC 9110 §10.2.3) as milliseconds from `now`: delta-seconds or an HTTP-date in any
 * of the three formats recipients must accept. Undefined when absent or unparseable, so the caller
 * falls back to its backoff schedule; never negative, so a date in the past means "now". Capping a
 * long wish is the retry policy's job (`maxRetryAfter`), not this parser's.
 */
export function parseRetryAfter(headers: Record<string, string>, now: number): number | undefined {
  const raw = Object.entries(headers).find(([name]) => name.toLowerCase() === 'retry-after')?.[1];
  if (raw === undefined) return undefined;
  const value = raw.trim();
  if (/^\d+$/.test(value)) return Math.min(Number(value) * 1000, Number.MAX_SAFE_INTEGER);
  const date = parseHttpDate(value, now);
  return date === undefined ? undefined : Math.max(0, date - now);
}

const months = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const time = String.raw`(\d{2}):(\d{2}):(\d{2})`;
// Date.parse is not used: it accepts almost anything ("1 2" is a date) and reads asctime as local time.
/** IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT` */
const imfFixdate = new RegExp(String.raw`^[a-z]{3}, (\d{2}) ([a-z]{3}) (\d{4}) ${time} gmt$`, 'i');
/** Obsolete RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT` */
const rfc850 = new RegExp(String.raw`^[a-z]{6,9}, (\d{2})-([a-z]{3})-(\d{2}) ${time} gmt$`, 'i');
/** Obsolete asctime: `Sun Nov  6 08:49:37 1994` */
const asctime = new RegExp(String.raw`^[a-z]{3} ([a-z]{3}) ([ \d]\d) ${time} (\d{4})$`, 'i');

function parseHttpDate(value: string, now: number): number | undefined {
  // Each format's fields as [day, month name, year, hours, minutes, seconds].
  let fields: string[] | undefined;
  let match: RegExpExecArray | null;
  if ((match = imfFixdate.exec(value))) fields = match.slice(1, 7);
  else if ((match = rfc850.exec(value))) fields = match.slice(1, 7);
  else if ((match = asctime.exec(value)))
    fields = [match[2]!, match[1]!, ...match.slice(6, 7), ...match.slice(3, 6)];
  if (!fields) return undefined;
  const [dayText, monthName, yearText, h, m, s] = fields as [string, string, string, string, string, string];
  const month = months.indexOf(monthName.toLowerCase());
  const day = Number(dayText.trim());
  const year = yearText.length === 2 ? twoDigitYear(Number(yearText), now) : Number(yearText);
  const [hours, minutes, seconds] = [h, m, s].map(Number) as [number, number, number];
  if (month < 0 || hours > 23 || minutes > 59 || seconds > 60) return undefined;
  // A leap second (:60) is read as :59 rather than rolling into the next minute.
  const ms = Date.UTC(year, month, day, hours, minutes, Math.min(seconds, 59));
  // Date.UTC rolls 31 Feb over into March; a date that does not exist is garbage, not a wait.
  return day >= 1 && new Date(ms).getUTCDate() === day ? ms : undefined;
}

/**
 * RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the past century.
 */
function twoDigitYear(yy: number, now: number): number {
  const thisYear = new Date(now).getUTCFullYear();
  const year = Math.floor(thisYear / 100) * 100 + yy;
  return year > thisYear + 50 ? year - 100 : year;
}
