import { scrubSecrets } from '../domain/scrub.js';
import { performance } from 'node:perf_hooks';
import { Agent } from 'undici';
import type { Dispatcher } from 'undici';
import type { Timeouts } from '../config/connection-schema.js';
import type { RenderedRequest, SendOutcome } from '../domain/delivery.js';
import { headerValueProblem, isHttpToken } from './header-rules.js';
import { guardedConnector, targetPathRule } from './target-guard.js';
import type { GuardOptions } from './target-guard.js';
import { DeadlinePassed, ResponseCollector } from './response-collector.js';

export interface SenderOptions extends GuardOptions {
  /** Most sockets open at once to one origin (per connect-timeout value, see `AgentsByConnectTimeout`). Default 16. */
  connectionsPerOrigin?: number;
}

export interface SendLimits {
  timeouts: Timeouts;
  /** Bytes of response body kept; the rest is discarded and `bodyTruncated` is set. */
  maxResponseBytes: number;
}

export interface Sender {
  /** Sends one request. Never rejects: transport failures come back as `{ kind: 'error' }`. */
  send(req: RenderedRequest, limits: SendLimits): Promise<SendOutcome>;
  /** Closes pooled sockets after in-flight requests finish. An injected dispatcher is left to its owner. */
  close(): Promise<void>;
  /** Aborts requests in flight (their deliveries see a NETWORK error and are retried later). */
  destroy(): Promise<void>;
}

type ErrorCode = Extract<SendOutcome, { kind: 'error' }>['code'];

/**
 * undici fixes the connect timeout when a pool's connector is built; `request()` only takes
 * headers/body timeouts. An AbortSignal cannot stand in for it: on a reused keep-alive socket there
 * is no connect phase to time, and an abort surfaces as UND_ERR_ABORTED, not a connect timeout. So
 * we keep one keep-alive Agent per connect-timeout value. Connections use a handful of values (the
 * default is 5s), so the cache stays tiny; past `MAX_AGENTS` the least recently used one is closed
 * gracefully (in-flight requests finish first).
 */
const MAX_AGENTS = 8;

class AgentsByConnectTimeout {
  private readonly agents = new Map<number, Agent>();
  constructor(private readonly opts: SenderOptions) {}

  get(connectTimeout: number): Agent {
    let agent = this.agents.get(connectTimeout);
    if (agent) {
      this.agents.delete(connectTimeout); // re-insert: Map order is our LRU order
    } else {
      agent = new Agent({
        connect: guardedConnector({ ...this.opts, timeout: connectTimeout }),
        connections: this.opts.connectionsPerOrigin ?? 16,
        pipelining: 1, // no pipelining: one slow CRM response must not hold up the next request
        keepAliveTimeout: 4_000,
      });
      const oldest = this.agents.keys().next();
      if (this.agents.size >= MAX_AGENTS && !oldest.done) {
        // Nothing waits on an evicted Agent; a failed close must not become an unhandled rejection.
        this.agents
          .get(oldest.value)
          ?.close()
          .catch(() => undefined);
        this.agents.delete(oldest.value);
      }
    }
    this.agents.set(connectTimeout, agent);
    return agent;
  }

  async close(): Promise<void> {
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map((a) => a.close()));
  }

  async destroy(): Promise<void> {
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map((a) => a.destroy()));
  }
}

export function createSender(opts: SenderOptions, dispatcher?: Dispatcher): Sender {
  const agents = dispatcher ? undefined : new AgentsByConnectTimeout(opts);
  const outsidePaths = targetPathRule(opts);
  let closed = false;

  async function send(req: RenderedRequest, limits: SendLimits): Promise<SendOutcome> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    const { connect, headers: headersTimeout, body: bodyTimeout } = limits.timeouts;
    const fail = (code: ErrorCode, message: string): SendOutcome => ({
      kind: 'error',
      code,
      message: redact(message, req.secrets),
      durationMs: elapsed(),
    });

    const url = parsedUrl(req.url);
    if (!url) return fail('TARGET_REFUSED', 'the request URL is not a valid absolute URL');
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return fail('TARGET_REFUSED', `only http and https targets are allowed, not ${url.protocol}`);
    }
    // The connector sees no path: the allowed targets' path rule is checked here.
    const outside = outsidePaths(req.url);
    if (outside) return fail('TARGET_REFUSED', outside);
    const invalid = requestProblem(req);
    if (invalid) return fail('REQUEST_INVALID', invalid);
    if (closed) return fail('NETWORK', 'the sender is closed');
    // `host` never includes userinfo, path or query, which may carry credentials.
    const target = url.host;

    // headersTimeout starts only once the request is written, and bodyTimeout is idle time between
    // chunks, so neither bounds time spent queued for a busy pool or a body trickled byte by byte.
    // This deadline caps the whole attempt so a worker can never hang on one CRM; it still leaves
    // the body phase at least `bodyTimeout` in total. A cleared timer, so a busy worker does not keep
    // thousands of finished attempts' timers.
    const deadlineMs = connect + headersTimeout + bodyTimeout;
    const answer = new ResponseCollector(limits.maxResponseBytes);
    const timer = setTimeout(() => answer.giveUp(new DeadlinePassed()), deadlineMs);
    try {
      // dispatch(), not request(): the answer is collected straight from the socket's chunks, with
      // no async resource, body stream or abort signal per request (docs/performance.md).
      (dispatcher ?? agents!.get(connect)).dispatch(
        {
          origin: url.origin,
          path: url.path,
          method: req.method,
          headers: req.headers,
          body: req.body ?? null,
          headersTimeout,
          bodyTimeout,
          // undici never follows redirects here: a 3xx comes back to the rules, and a redirect can
          // never steer us past the guard.
        },
        answer,
      );
      const { status, headers, text, truncated } = await answer.collected;
      return {
        kind: 'response',
        status,
        headers,
        body: text,
        bodyTruncated: truncated,
        durationMs: elapsed(),
      };
    } catch (err) {
      if (err instanceof DeadlinePassed) {
        const within = describeMs(deadlineMs);
        return answer.gotHeaders
          ? fail('BODY_TIMEOUT', `response body from ${target} not complete within ${within}`)
          : fail('HEADERS_TIMEOUT', `no response headers from ${target} within ${within}, queueing included`);
      }
      const [code, message] = classify(err, target, limits.timeouts);
      return fail(code, message);
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    send,
    async close() {
      closed = true;
      await agents?.close();
    },
    async destroy() {
      closed = true;
      await agents?.destroy();
    },
  };
}

/**
 * Why the HTTP client would refuse to build this request, checked before it is handed over (by the
 * rules undici applies, not by reading its error text). Names the header, never its value.
 */
function requestProblem(req: RenderedRequest): string | undefined {
  if (!isHttpToken(req.method)) return 'the method is not a valid HTTP token';
  for (const [name, value] of Object.entries(req.headers)) {
    if (!isHttpToken(name)) return `header name ${JSON.stringify(name)} is not a valid HTTP token`;
    const problem = headerValueProblem(value);
    if (problem) return `header ${name}: ${problem}`;
  }
  return undefined;
}

interface TargetUrl {
  protocol: string;
  origin: string;
  host: string;
  /** Path and query, as sent. */
  path: string;
}

/** A connection's URL is mostly the same for every delivery: the last one parsed is kept. */
let lastUrl: { href: string; parsed: TargetUrl } | undefined;

function parsedUrl(href: string): TargetUrl | undefined {
  if (lastUrl?.href === href) return lastUrl.parsed;
  let url: URL;
  try {
    url = new URL(href);
  } catch {
    return undefined;
  }
  const parsed = {
    protocol: url.protocol,
    origin: url.origin,
    host: url.host,
    path: `${url.pathname}${url.search}`,
  };
  lastUrl = { href, parsed };
  return parsed;
}

const networkReasons: Record<string, string> = {
  ECONNREFUSED: 'connection refused by',
  ECONNRESET: 'connection reset by',
  EPIPE: 'connection closed while sending to',
  ETIMEDOUT: 'connection timed out to',
  EHOSTUNREACH: 'no route to',
  ENETUNREACH: 'network unreachable for',
  ENOTFOUND: 'no DNS record for',
  EAI_AGAIN: 'DNS lookup failed temporarily for',
  UND_ERR_SOCKET: 'socket closed by',
  UND_ERR_CLOSED: 'connection pool closed for',
  UND_ERR_DESTROYED: 'connection pool destroyed for',
  UND_ERR_ABORTED: 'request aborted to',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'response length did not match content-length from',
  UND_ERR_INFO: 'unexpected informational response from',
  HPE_INVALID_CONSTANT: 'invalid HTTP response from',
};

/**
 * Maps a transport error to an outcome code and a message built only from the error's code, the
 * peer address and our timeouts: never the error's own message, request headers or body.
 */
function classify(err: unknown, target: string, timeouts: Timeouts): [ErrorCode, string] {
  const e = rootCause(err);
  switch (e.code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return ['CONNECT_TIMEOUT', `no connection to ${target} within ${describeMs(timeouts.connect)}`];
    case 'UND_ERR_HEADERS_TIMEOUT':
      return ['HEADERS_TIMEOUT', `no response headers from ${target} within ${describeMs(timeouts.headers)}`];
    case 'UND_ERR_BODY_TIMEOUT':
      return ['BODY_TIMEOUT', `response body from ${target} stalled for ${describeMs(timeouts.body)}`];
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return ['RESPONSE_TOO_LARGE', `response from ${target} exceeded the dispatcher's size limit`];
    case 'UND_ERR_INVALID_ARG':
    case 'ERR_INVALID_ARG_TYPE':
    case 'ERR_INVALID_CHAR':
      // The client refused to build the request: nothing reached the CRM, so this is not its health.
      return ['REQUEST_INVALID', `the HTTP client could not build the request to ${target} (${e.code})`];
    case 'TARGET_REFUSED':
      // Our own message: names the host and address, nothing else.
      return ['TARGET_REFUSED', e.message ?? `refused to connect to ${target}`];
  }
  const code = e.code ?? 'UNKNOWN';
  const peer =
    e.address && e.port ? `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port}` : target;
  const reason =
    networkReasons[code] ?? (code.startsWith('HPE_') ? 'invalid HTTP response from' : 'network error with');
  return ['NETWORK', `${code}: ${reason} ${peer}`];
}

interface ErrorLike {
  code?: string;
  message?: string;
  address?: string;
  port?: number;
}

/** undici may wrap the socket error (`cause`); Node reports each address tried in an AggregateError. */
function rootCause(err: unknown): ErrorLike {
  let e = (err ?? {}) as ErrorLike & { cause?: unknown; errors?: unknown[] };
  for (let depth = 0; depth < 5 && !e.code; depth++) {
    const next = e.errors?.[0] ?? e.cause;
    if (!next) break;
    e = next as typeof e;
  }
  return e;
}

function describeMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** Defence in depth: a secret that ended up in a host name must not reach the attempt record. */
function redact(message: string, secrets: string[]): string {
  return scrubSecrets(message, secrets);
}
