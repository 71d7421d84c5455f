import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseEnv } from '../../src/config/env.js';

// Docker is not available where the tests run: these read the files the way Compose does (the
// Compose spec's env_file, environment, interpolation and healthcheck fields) and hold them to what
// the README walkthrough needs.

interface Service {
  env_file?: string | Array<string | { path: string; required?: boolean }>;
  environment?: Record<string, string> | string[];
  ports?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
}
const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, Service> };
const engine = compose.services.engine!;

function envFileOf(input: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of input.split('\n')) {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) values[match[1]!] = match[2]!;
  }
  return values;
}

describe('docker-compose.yml', () => {
  it('passes .env to the engine', () => {
    const files = [engine.env_file ?? []].flat().map((file) => (typeof file === 'string' ? file : file.path));
    expect(files).toContain('.env');
  });

  it('always sets ADMIN_TOKEN, so the engine never keeps a token the host’s CLI cannot read', () => {
    const environment = engine.environment as Record<string, string>;
    // From .env, or empty: an empty token stops the engine at start (parseEnv below). Not
    // ${ADMIN_TOKEN:?...}: Compose interpolates every service for every command, redis's included.
    expect(environment.ADMIN_TOKEN).toBe('${ADMIN_TOKEN:-}');
    expect(() => parseEnv({ ADMIN_TOKEN: '' })).toThrow(/ADMIN_TOKEN: use at least 16 characters/);
    expect(JSON.stringify(compose)).not.toMatch(/\$\{[A-Za-z_]+:?\?/);
  });

  it('publishes the port .env.example gives the CLI as ADMIN_URL', () => {
    const example = envFileOf(readFileSync('.env.example', 'utf8'));
    expect(Object.keys(example)).toEqual(expect.arrayContaining(['ADMIN_TOKEN', 'ADMIN_URL']));
    expect(example.ADMIN_TOKEN).toBe(''); // the engine refuses to start until it is set
    const port = new URL(example.ADMIN_URL!).port;
    expect(engine.ports).toContain(`${port}:${(engine.environment as Record<string, string>).PORT}`);
  });

  it('names the variables the CLI reads', () => {
    const cli = readFileSync('src/cli/main.ts', 'utf8');
    expect(cli).toContain(".env('ADMIN_URL')");
    expect(cli).toContain(".env('ADMIN_TOKEN')");
  });

  it('checks the engine’s /readyz and starts it after Redis is healthy', () => {
    expect(engine.healthcheck!.test.join(' ')).toContain('/readyz');
    expect(engine.depends_on).toEqual({ redis: { condition: 'service_healthy' } });
    expect(compose.services.redis!.healthcheck!.test).toEqual(['CMD', 'redis-cli', 'ping']);
  });

  it('keeps .env out of git and out of the image', () => {
    const lines = (file: string) => readFileSync(file, 'utf8').split('\n');
    expect(lines('.gitignore')).toContain('.env');
    expect(lines('.dockerignore')).toContain('.env');
  });

  it('is what the README’s Docker section walks through', () => {
    const readme = readFileSync('README.md', 'utf8');
    const docker = readme.slice(readme.indexOf('## Docker'));
    expect(docker).toContain('cp .env.example .env');
    expect(docker).toMatch(/ADMIN_TOKEN/);
    expect(docker).toMatch(/ADMIN_URL/);
  });
});
