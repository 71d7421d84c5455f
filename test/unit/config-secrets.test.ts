import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSecrets } from '../../src/config/secrets.js';
import { StartupError } from '../../src/errors.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-secrets-'));
  await writeFile(path.join(dir, 'secrets.env'), '# comment\nACME_KEY=from-file\nexport QUOTED="a b=c"\n\n');
  await writeFile(path.join(dir, 'secrets.yaml'), 'ACME_KEY: from-yaml\nNUMERIC: 12345\n');
  await mkdir(path.join(dir, 'run'));
  await writeFile(path.join(dir, 'run', 'ACME_KEY'), 'from-dir\n');
  await writeFile(path.join(dir, 'bad.env'), 'ACME_KEY=ok\nthis line is the secret itself\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('loadSecrets', () => {
  it('reads NAME=value lines, then falls back to the environment', () => {
    const secrets = loadSecrets({
      SECRETS_FILE: path.join(dir, 'secrets.env'),
      ENV_ONLY: 'from-env',
      ACME_KEY: 'from-env',
    });
    expect(secrets.get('ACME_KEY')).toBe('from-file');
    expect(secrets.get('QUOTED')).toBe('a b=c');
    expect(secrets.get('ENV_ONLY')).toBe('from-env');
    expect(secrets.get('MISSING')).toBeUndefined();
  });

  it('reads a YAML map', () => {
    const secrets = loadSecrets({ SECRETS_FILE: path.join(dir, 'secrets.yaml') });
    expect(secrets.get('ACME_KEY')).toBe('from-yaml');
    expect(secrets.get('NUMERIC')).toBe('12345');
  });

  it('prefers a secrets directory, one file per secret, without the trailing newline', () => {
    const secrets = loadSecrets({
      SECRETS_DIR: path.join(dir, 'run'),
      SECRETS_FILE: path.join(dir, 'secrets.env'),
    });
    expect(secrets.get('ACME_KEY')).toBe('from-dir');
  });

  it('names the file and line of a malformed line without printing it', () => {
    const load = () => loadSecrets({ SECRETS_FILE: path.join(dir, 'bad.env') });
    expect(load).toThrow(StartupError);
    expect(load).toThrow(/bad\.env:2: expected NAME=value$/);
    expect(load).not.toThrow(/secret itself/);
  });

  it('refuses a missing file and reserved names', async () => {
    expect(() => loadSecrets({ SECRETS_FILE: path.join(dir, 'nope.env') })).toThrow(
      /cannot read it \(ENOENT\)/,
    );
    await writeFile(path.join(dir, 'reserved.env'), 'ADMIN_TOKEN=x\n');
    expect(() => loadSecrets({ SECRETS_FILE: path.join(dir, 'reserved.env') })).toThrow(
      /ADMIN_TOKEN is reserved/,
    );
    expect(loadSecrets({ ADMIN_TOKEN: 'x' }).get('ADMIN_TOKEN')).toBeUndefined();
  });
});
