import { Agent, request, type Dispatcher } from 'undici';
import { standardWebhookHeaders, standardWebhookKey } from '../auth/hmac.js';
import { InputError } from '../errors.js';
import type { OperationalEvent } from './operational-event.js';

export interface WebhookPosterOptions {
  /** `EVENTS_WEBHOOK_URL`: operator-configured, so no SSRF guard. Only its host is ever shown. */
  url: string;
  /** `EVENTS_WEBHOOK_SECRET`: when set, each POST carries Standard Webhooks signature headers. */
  secret?: string;
  /** Default: the poster's own Agent (5 s connect timeout), closed by `close()`. */
  dispatcher?: Dispatcher;
  clock?: () => number;
}

export type PostOutcome =
  { ok: true; status: number } | { ok: false; status?: number; code?: string; aborted?: boolean };

export const WEBHOOK_TIMEOUTS = { connect: 5_000, headers: 10_000, body: 10_000 };

/** One event, one POST: JSON body, signed when there is a secret. Never rejects. */
export class WebhookPoster {
  /** host[:port] of the webhook: what logs may show (never the path or query, which may carry a token). */
  readonly target: string;
  readonly signed: boolean;
  private readonly url: string;
  private readonly secret: string | undefined;
  private readonly ownAgent: Agent | undefined;
  private readonly dispatcher: Dispatcher;
  private readonly clock: () => number;

  constructor(options: WebhookPosterOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new InputError('the events webhook URL is not a valid absolute URL', {
        EVENTS_WEBHOOK_URL: 'not a valid URL',
      });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new InputError('the events webhook URL must be http or https', {
        EVENTS_WEBHOOK_URL: 'use an http(s) URL',
      });
    }
    // Fails now, with a message that never contains the secret, rather than on the first event.
    if (options.secret !== undefined) standardWebhookKey(options.secret);
    this.url = options.url;
    this.target = url.host;
    this.secret = options.secret;
    this.signed = options.secret !== undefined;
    this.ownAgent = options.dispatcher
      ? undefined
      : new Agent({
          connect: { timeout: WEBHOOK_TIMEOUTS.connect },
          headersTimeout: WEBHOOK_TIMEOUTS.headers,
          bodyTimeout: WEBHOOK_TIMEOUTS.body,
          keepAliveTimeout: 4_000,
        });
    this.dispatcher = options.dispatcher ?? this.ownAgent!;
    this.clock = options.clock ?? Date.now;
  }

  /** 2xx is `ok`; any other answer or a transport error is not. `signal` aborts the POST. */
  async post(event: OperationalEvent, signal?: AbortSignal): Promise<PostOutcome> {
    const body = JSON.stringify(event);
    const timestamp = Math.floor(this.clock() / 1_000);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'unsub-relay',
      // webhook-id (the event id) goes along unsigned too, so receivers can always deduplicate.
      ...(this.secret !== undefined
        ? standardWebhookHeaders({ secret: this.secret, id: event.id, timestamp, body })
        : { 'webhook-id': event.id, 'webhook-timestamp': String(timestamp) }),
    };
    // headersTimeout and bodyTimeout do not bound a body trickled byte by byte: cap the whole POST.
    const { connect, headers: headersTimeout, body: bodyTimeout } = WEBHOOK_TIMEOUTS;
    const controller = new AbortController();
    const abort = () => controller.abort();
    const timer = setTimeout(abort, connect + headersTimeout + bodyTimeout);
    signal?.addEventListener('abort', abort, { once: true });
    if (signal?.aborted) abort();
    try {
      const response = await request(this.url, {
        method: 'POST',
        headers,
        body,
        dispatcher: this.dispatcher,
        headersTimeout,
        bodyTimeout,
        signal: controller.signal,
      });
      await response.body.dump().catch(() => undefined);
      const status = response.statusCode;
      return status >= 200 && status < 300 ? { ok: true, status } : { ok: false, status };
    } catch (error) {
      return { ok: false, code: errorCode(error), aborted: controller.signal.aborted };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    }
  }

  /** Closes the poster's own Agent; an injected dispatcher is left to its owner. */
  async close(): Promise<void> {
    await this.ownAgent?.close();
  }
}

/** The transport error's code only (`UND_ERR_CONNECT_TIMEOUT`, `ECONNREFUSED`): never its message. */
function errorCode(error: unknown): string {
  let e = error as { code?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; depth < 5 && e; depth++) {
    if (typeof e.code === 'string') return e.code;
    e = e.cause as typeof e;
  }
  const name = (error as { name?: unknown } | undefined)?.name;
  return name === 'AbortError' ? 'ABORTED' : 'NETWORK';
}
