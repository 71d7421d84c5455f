import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

// Docker is not available where the tests run: this reads the Dockerfile's instructions (line
// continuations joined, one stage per FROM) and holds the image to what docs/operations.md promises.

interface Instruction {
  keyword: string;
  args: string;
}

function stagesOf(text: string): Instruction[][] {
  const stages: Instruction[][] = [];
  const joined = text.replace(/\\\n/g, ' ');
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [, keyword, args] = /^(\S+)\s*(.*)$/.exec(line)!;
    const instruction = { keyword: keyword!.toUpperCase(), args: args! };
    if (instruction.keyword === 'FROM') stages.push([]);
    stages.at(-1)!.push(instruction);
  }
  return stages;
}

const stages = stagesOf(readFileSync('Dockerfile', 'utf8'));
const runtime = stages.at(-1)!;
const all = stages.flat();
const args = (keyword: string, stage = runtime) =>
  stage.filter((instruction) => instruction.keyword === keyword).map((instruction) => instruction.args);
const exec = (keyword: string) => JSON.parse(args(keyword).at(-1)!) as string[];

describe('Dockerfile', () => {
  it('builds on Node 24 in every stage, in more than one stage', () => {
    expect(stages.length).toBeGreaterThan(1);
    for (const from of args('FROM', all)) expect(from).toMatch(/^node:24(\.\d+)*-bookworm-slim\b/);
  });

  it('installs production dependencies only', () => {
    const installs = args('RUN', all).filter((run) => /\bnpm (ci|install)\b/.test(run));
    expect(installs.length).toBeGreaterThan(0);
    for (const install of installs) expect(install).toContain('--omit=dev');
    // The runtime stage takes node_modules from the stage that installed them.
    expect(args('COPY')).toContainEqual(expect.stringMatching(/^--from=\S+ \/app\/node_modules /));
  });

  it('has what the CLI runs with at runtime as a production dependency (tsx)', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string> };
    const bin = readFileSync('bin/unsub-relay.js', 'utf8');
    const imported = [...bin.matchAll(/from '([^'.][^']*)'/g)].map((match) => match[1]!.split('/')[0]!);
    expect(imported).toContain('tsx');
    for (const name of imported) expect(Object.keys(pkg.dependencies)).toContain(name);
  });

  it('runs under an init (tini) as PID 1', () => {
    expect(args('RUN').join(' ')).toMatch(/apt-get install [^&]*\btini\b/);
    expect(exec('ENTRYPOINT')).toEqual(['/usr/bin/tini', '--']);
    expect(exec('CMD')).toEqual(['node', 'bin/unsub-relay.js', 'start']);
  });

  it('checks /readyz', () => {
    const healthcheck = args('HEALTHCHECK');
    expect(healthcheck).toHaveLength(1);
    expect(healthcheck[0]).toMatch(/CMD \["node", "-e", ".*\/readyz/);
  });

  it('runs as node, with .unsub-relay writable by it', () => {
    const users = args('USER');
    expect(users.at(-1)).toBe('node');
    expect(args('RUN').join(' ')).toMatch(/chown node:node \/app\/\.unsub-relay/);
    const workdir = args('WORKDIR').at(-1);
    expect(workdir).toBe('/app');
  });

  it('sends no secrets or local state into the build', () => {
    const ignored = readFileSync('.dockerignore', 'utf8').split('\n');
    for (const entry of ['.env', 'node_modules', '.unsub-relay', '.git']) expect(ignored).toContain(entry);
  });
});
