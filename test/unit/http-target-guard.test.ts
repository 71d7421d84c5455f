import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import {
  guardedLookup,
  isAllowedHost,
  isForbiddenAddress,
  targetPathRule,
} from '../../src/http/target-guard.js';

describe('isForbiddenAddress', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback /8'],
    ['::1', 'IPv6 loopback'],
    ['10.1.2.3', 'private 10/8'],
    ['172.16.0.1', 'private 172.16/12 low'],
    ['172.31.255.255', 'private 172.16/12 high'],
    ['192.168.1.1', 'private 192.168/16'],
    ['169.254.169.254', 'cloud metadata'],
    ['169.254.0.1', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'this network'],
    ['::', 'IPv6 unspecified'],
    ['100.64.0.1', 'CGNAT low'],
    ['100.127.255.255', 'CGNAT high'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast SSDP'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.0.192', 'IETF assignments (Oracle metadata)'],
    ['fc00::1', 'unique local'],
    ['fd12:3456::1', 'unique local fd'],
    ['fd00:ec2::254', 'AWS metadata IPv6'],
    ['fe80::1', 'IPv6 link-local'],
    ['fe80::1%eth0', 'IPv6 link-local with zone'],
    ['ff02::1', 'IPv6 multicast'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback (dotted)'],
    ['::ffff:7f00:1', 'IPv4-mapped loopback (hex)'],
    ['::ffff:169.254.169.254', 'IPv4-mapped metadata'],
    ['::ffff:10.0.0.1', 'IPv4-mapped private'],
    ['0:0:0:0:0:ffff:c0a8:0101', 'IPv4-mapped private, long form'],
    ['64:ff9b::7f00:1', 'NAT64 loopback'],
    ['64:ff9b::169.254.169.254', 'NAT64 metadata (dotted)'],
    ['64:ff9b::a00:1', 'NAT64 private'],
    ['64:ff9b:1::1', 'local-use NAT64'],
    ['2002:7f00:1::', '6to4 of loopback'],
    ['2002:a9fe:a9fe::1', '6to4 of metadata'],
    ['::127.0.0.1', 'IPv4-compatible loopback'],
    ['::ffff:0:10.0.0.1', 'IPv4-translated private'],
    ['2001:db8::1', 'documentation'],
    ['not-an-ip', 'not an address: fail closed'],
    ['', 'empty: fail closed'],
  ])('refuses %s (%s)', (ip) => {
    expect(isForbiddenAddress(ip)).toBe(true);
  });

  it.each([
    ['93.184.215.14', 'public IPv4'],
    ['8.8.8.8', 'public DNS'],
    ['172.15.255.255', 'just below 172.16/12'],
    ['172.32.0.0', 'just above 172.16/12'],
    ['100.63.255.255', 'just below CGNAT'],
    ['100.128.0.0', 'just above CGNAT'],
    ['169.253.255.255', 'just below link-local'],
    ['11.0.0.1', 'just above 10/8'],
    ['223.255.255.255', 'just below multicast'],
    ['2606:4700::6810:84e5', 'public IPv6'],
    ['2a00:1450:4001:82a::200e', 'public IPv6 (Google)'],
    ['::ffff:8.8.8.8', 'IPv4-mapped public'],
    ['64:ff9b::808:808', 'NAT64 of public'],
    ['2002:808:808::1', '6to4 of public'],
  ])('allows %s (%s)', (ip) => {
    expect(isForbiddenAddress(ip)).toBe(false);
  });
});

describe('isAllowedHost', () => {
  const opts = {
    allowPrivateTargets: false,
    allowedTargets: ['http://127.0.0.1:8080/sandbox/crm', 'http://[::1]:9090/', 'http://Sandbox.Local/crm/'],
  };

  it('allows exactly the listed host:port', () => {
    expect(isAllowedHost(opts, '127.0.0.1', 8080)).toBe(true);
    expect(isAllowedHost(opts, '::1', 9090)).toBe(true);
    expect(isAllowedHost(opts, 'sandbox.local', 80)).toBe(true);
  });

  it('refuses another port or host', () => {
    expect(isAllowedHost(opts, '127.0.0.1', 8081)).toBe(false);
    expect(isAllowedHost(opts, '127.0.0.2', 8080)).toBe(false);
    expect(isAllowedHost(opts, '::1', 8080)).toBe(false);
    expect(isAllowedHost({ allowPrivateTargets: false }, '127.0.0.1', 8080)).toBe(false);
  });

  it('allows everything with allowPrivateTargets', () => {
    expect(isAllowedHost({ allowPrivateTargets: true }, '10.0.0.1', 1)).toBe(true);
  });
});

describe('targetPathRule', () => {
  const rule = targetPathRule({
    allowPrivateTargets: true,
    allowedTargets: ['http://127.0.0.1:8080/sandbox/crm'],
  });

  it('lets paths under the prefix through, whole segments only', () => {
    expect(rule('http://127.0.0.1:8080/sandbox/crm')).toBeUndefined();
    expect(rule('http://127.0.0.1:8080/sandbox/crm/unsubscribes?x=1')).toBeUndefined();
  });

  it('refuses the rest of the allowed port, even with private targets allowed, naming the rule', () => {
    for (const href of [
      'http://127.0.0.1:8080/admin/v1/connections',
      'http://127.0.0.1:8080/v1/unsubscribes',
      'http://127.0.0.1:8080/sandbox/crmx',
      'http://127.0.0.1:8080/sandbox/crm/../../admin/v1/keys',
      'http://127.0.0.1:8080/sandbox/crm/%2e%2e/%2e%2e/admin/v1/keys',
    ])
      expect(rule(href), href).toMatch(
        /^refused to send to http:\/\/127\.0\.0\.1:8080\/.*: on 127\.0\.0\.1:8080 only \/sandbox\/crm\/… may be reached/,
      );
  });

  it('leaves other hosts and ports to the address rules', () => {
    expect(rule('http://127.0.0.1:8081/admin/v1/connections')).toBeUndefined();
    expect(rule('https://crm.example/admin')).toBeUndefined();
    expect(targetPathRule({ allowPrivateTargets: false })('http://127.0.0.1:8080/admin')).toBeUndefined();
  });
});

type LookupResult = { err: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number };

function lookup(allowPrivateTargets: boolean, hostname: string, all: boolean): Promise<LookupResult> {
  return new Promise((resolve) => {
    guardedLookup({ allowPrivateTargets })(hostname, { all }, (err, address, family) =>
      resolve({ err, address, family }),
    );
  });
}

describe('guardedLookup', () => {
  it('refuses a name that resolves to loopback, with code TARGET_REFUSED', async () => {
    const { err } = await lookup(false, 'localhost', true);
    expect(err?.code).toBe('TARGET_REFUSED');
    expect(err?.message).toMatch(/^refused to connect to localhost \((127\.0\.0\.1|::1)\)/);
  });

  it('refuses an IP literal passed to it', async () => {
    const { err } = await lookup(false, '127.0.0.1', false);
    expect(err?.code).toBe('TARGET_REFUSED');
    expect(err?.message).toBe('refused to connect to 127.0.0.1: private, loopback or reserved address');
  });

  it('resolves in the shape asked for when private targets are allowed', async () => {
    const single = await lookup(true, '127.0.0.1', false);
    expect(single).toEqual({ err: null, address: '127.0.0.1', family: 4 });
    const all = await lookup(true, '127.0.0.1', true);
    expect(all).toEqual({ err: null, address: [{ address: '127.0.0.1', family: 4 }], family: undefined });
  });

  it('passes DNS errors through unchanged', async () => {
    const { err } = await lookup(false, 'no-such-host.invalid', true);
    expect(err?.code).toMatch(/^(ENOTFOUND|EAI_AGAIN)$/);
  });
});
