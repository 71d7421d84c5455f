import { userInfo } from 'node:os';
import { readLocalAdminToken } from '../admin-token.js';
import { UnsubRelayError } from '../errors.js';

/** A failed admin API call, with the API's own message (which says what to do). */
export class AdminApiError extends UnsubRelayError {
  readonly code = 'ADMIN_API';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface AdminClientOptions {
  adminUrl: string;
  adminToken?: string;
}

/** The CLI's way to the engine: every operator command is a call to the admin API. */
export class AdminClient {
  private readonly token: string;

  constructor(private readonly options: AdminClientOptions) {
    const token = options.adminToken ?? readLocalAdminToken();
    if (!token) {
      throw new AdminApiError(
        0,
        'no admin token: pass --admin-token or set ADMIN_TOKEN (an engine started here without one writes .unsub-relay/admin-token)',
      );
    }
    this.token = token;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = `${this.options.adminUrl.replace(/\/$/, '')}/admin/v1${path}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: 'application/json',
          // Who did it, for the records of pauses, discards and replays (the admin token is shared).
          'x-operator': operatorName(),
          // Recorded with every version a command makes (a connection's origin: api, cli or console).
          'x-unsub-relay-client': 'cli',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch {
      throw new AdminApiError(
        0,
        `cannot reach the engine at ${this.options.adminUrl}: is it running? (set --admin-url or ADMIN_URL)`,
      );
    }
    const text = await response.text();
    const parsed = text ? (JSON.parse(text) as unknown) : undefined;
    if (!response.ok) {
      const error = parsed as { message?: string; fields?: Record<string, string> } | undefined;
      const fields = error?.fields
        ? ` (${Object.entries(error.fields)
            .map(([k, v]) => `${k}: ${v}`)
            .join('; ')})`
        : '';
      throw new AdminApiError(response.status, `${error?.message ?? `HTTP ${response.status}`}${fields}`);
    }
    return parsed as T;
  }
}

/** `UNSUB_RELAY_OPERATOR`, else the login name: what records show as who acted. */
function operatorName(): string {
  if (process.env.UNSUB_RELAY_OPERATOR) return process.env.UNSUB_RELAY_OPERATOR;
  try {
    return `${userInfo().username}@cli`;
  } catch {
    return 'cli';
  }
}
