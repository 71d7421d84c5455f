import dns from 'node:dns';
import net from 'node:net';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { buildConnector } from 'undici';
import { UnsubRelayError } from '../errors.js';

/**
 * SSRF guard: connection files are written by integration engineers and render URLs from templates,
 * so nothing may reach loopback, private networks or cloud metadata unless the operator allows it.
 *
 * The check runs at connect time, on the address actually connected to, so a name that resolves to a
 * public address when validated and a private one when sent (DNS rebinding) is still refused.
 */
export interface GuardOptions {
  /** Let every address through (local development, tests against loopback servers). */
  allowPrivateTargets: boolean;
  /**
   * URL prefixes allowed whatever their address (`http://127.0.0.1:8080/sandbox/crm`): their
   * `host:port` may be connected to, and on it only paths under a prefix may be requested, so the
   * engine's own sandbox receiver is reachable and the rest of the engine's port (the admin API,
   * ingest) is not.
   */
  allowedTargets?: string[];
}

/** `host:port` as a URL writes it (`127.0.0.1:8080`, `[::1]:8080`), the default port made explicit. */
function hostPort(url: URL): string {
  return `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`.toLowerCase();
}

/** Each allowed target as the `host:port` it opens and the path prefix it allows there. */
function allowedTargets(opts: GuardOptions): Array<{ host: string; path: string }> {
  return (opts.allowedTargets ?? []).map((prefix) => {
    const url = new URL(prefix);
    return { host: hostPort(url), path: url.pathname.replace(/\/+$/, '') };
  });
}

/**
 * The allowed targets' path rule, built once per sender: it says why a request to `href` is refused,
 * or undefined. A URL on an allowed target's `host:port` must be under one of its path prefixes
 * (whole segments, after the URL's own `..` resolution), whatever `allowPrivateTargets` says.
 */
export function targetPathRule(opts: GuardOptions): (href: string) => string | undefined {
  const targets = allowedTargets(opts);
  if (targets.length === 0) return () => undefined;
  return (href) => {
    const url = new URL(href);
    const onHost = targets.filter((target) => target.host === hostPort(url));
    if (onHost.length === 0) return undefined;
    const under = onHost.some(
      (target) => url.pathname === target.path || url.pathname.startsWith(`${target.path}/`),
    );
    if (under) return undefined;
    return `refused to send to ${url.origin}${url.pathname}: on ${url.host} only ${onHost
      .map((target) => `${target.path}/…`)
      .join(
        ', ',
      )} may be reached (the built-in sandbox CRM); the rest of the engine's own port is not a delivery target`;
  };
}

/** The sender refused to connect: the target resolves to a forbidden address. Retrying cannot help. */
export class TargetRefusedError extends UnsubRelayError {
  readonly code = 'TARGET_REFUSED';
}

const blocked = new net.BlockList();
for (const [prefix, bits] of [
  ['0.0.0.0', 8], // "this network", incl. unspecified 0.0.0.0
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, incl. cloud metadata 169.254.169.254
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments (incl. 192.0.0.192 Oracle metadata)
  ['192.0.2.0', 24], // documentation ranges and 198.18/15 benchmarking: never a real CRM
  ['192.88.99.0', 24], // deprecated 6to4 relay anycast
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, incl. broadcast 255.255.255.255
] as const) {
  // BlockList also matches IPv4-mapped IPv6 addresses (::ffff:127.0.0.1, ::ffff:7f00:1) to these rules.
  blocked.addSubnet(prefix, bits, 'ipv4');
}
for (const [prefix, bits] of [
  ['::', 128],
  ['::1', 128],
  ['100::', 64], // discard-only
  ['2001::', 32], // Teredo: tunnels to an obfuscated IPv4 address we cannot check
  ['2001:db8::', 32], // documentation
  ['64:ff9b:1::', 48], // local-use NAT64 (RFC 8215): a private translator
  ['fc00::', 7], // unique local, incl. fd00:ec2::254 (AWS metadata over IPv6)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // deprecated site-local
  ['ff00::', 8], // multicast
] as const) {
  blocked.addSubnet(prefix, bits, 'ipv6');
}

/** True when connecting to `ip` could reach something internal. Anything that is not an IP is refused. */
export function isForbiddenAddress(ip: string): boolean {
  const address = ip.replace(/%.*$/, ''); // drop an IPv6 zone id (fe80::1%eth0)
  const family = net.isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family !== 6) return true;
  if (blocked.check(address, 'ipv6')) return true;
  // IPv6 forms that carry an IPv4 address the packet ends up at: judge the embedded address.
  const embedded = embeddedIpv4(address);
  return embedded !== undefined && blocked.check(embedded, 'ipv4');
}

/** The IPv4 address inside NAT64 (64:ff9b::/96), 6to4 (2002::/16), IPv4-compatible/translated forms. */
function embeddedIpv4(ipv6: string): string | undefined {
  const w = ipv6Words(ipv6);
  if (!w) return undefined;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zeros = (from: number, to: number) => w.slice(from, to).every((x) => x === 0);
  if (w[0] === 0x64 && w[1] === 0xff9b && zeros(2, 6)) return v4(w[6]!, w[7]!);
  if (w[0] === 0x2002) return v4(w[1]!, w[2]!);
  // ::a.b.c.d (deprecated IPv4-compatible), ::ffff:0:a.b.c.d (SIIT translated); mapped is BlockList's.
  if (zeros(0, 4) && (w[4] === 0 || w[4] === 0xffff) && (w[5] === 0 || w[5] === 0xffff)) {
    return v4(w[6]!, w[7]!);
  }
  return undefined;
}

/** The eight 16-bit words of a valid IPv6 address (already checked with net.isIPv6). */
function ipv6Words(ipv6: string): number[] | undefined {
  let text = ipv6.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  const words = [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  return words.length === 8 ? words : undefined;
}

/** Whether `hostname:port` may be connected to whatever it resolves to (paths: `refusedPath`). */
export function isAllowedHost(opts: GuardOptions, hostname: string, port: number): boolean {
  if (opts.allowPrivateTargets) return true;
  const host = net.isIPv6(hostname) ? `[${hostname}]` : hostname;
  const target = `${host}:${port}`.toLowerCase();
  return allowedTargets(opts).some((allowed) => allowed.host === target);
}

function refusal(hostname: string, address: string): TargetRefusedError {
  const shown = address === hostname ? address : `${hostname} (${address})`;
  return new TargetRefusedError(`refused to connect to ${shown}: private, loopback or reserved address`);
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for net/tls `connect` (and undici's `connect.lookup`) that resolves every address and
 * fails with `TargetRefusedError` (`code: 'TARGET_REFUSED'`) when any one is forbidden: with several
 * addresses Node may try each in turn, so one bad record is enough to refuse the name.
 *
 * Net skips `lookup` for IP-literal hosts and a lookup never sees the port, so this cannot enforce
 * `allowedTargets` or guard `http://127.0.0.1`: use `guardedConnector`, which does both.
 */
export function guardedLookup(opts: Pick<GuardOptions, 'allowPrivateTargets'>) {
  return function lookup(hostname: string, options: LookupOptions, callback: LookupCallback): void {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      if (!opts.allowPrivateTargets) {
        const bad = addresses.find((a) => isForbiddenAddress(a.address));
        if (bad) return callback(refusal(hostname, bad.address), []);
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      if (!first) return callback(new TargetRefusedError(`no address for ${hostname}`), []);
      callback(null, first.address, first.family);
    });
  };
}

/**
 * An undici connector that enforces the guard before any socket is opened: allowed targets' `host:port`
 * pass untouched, IP literals are checked directly (net would skip the lookup), names go through
 * `guardedLookup`. `timeout` is undici's connect timeout (DNS, TCP and TLS handshake together).
 */
export function guardedConnector(opts: GuardOptions & { timeout: number }): buildConnector.connector {
  const open = buildConnector({ timeout: opts.timeout });
  const guarded = opts.allowPrivateTargets
    ? open
    : buildConnector({ timeout: opts.timeout, lookup: guardedLookup(opts) });
  return (options, callback) => {
    const port = Number(options.port) || (options.protocol === 'https:' ? 443 : 80);
    if (isAllowedHost(opts, options.hostname, port)) return open(options, callback);
    if (net.isIP(options.hostname) && isForbiddenAddress(options.hostname)) {
      const err = refusal(options.hostname, options.hostname);
      return queueMicrotask(() => callback(err, null));
    }
    guarded(options, callback);
  };
}
