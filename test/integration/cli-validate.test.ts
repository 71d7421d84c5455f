import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/processes.js';

/** `unsub-relay validate` as an operator runs it: real CLI process, files in a temporary directory. */

const withSecret = `id: acme-crm
account: acme
name: Acme CRM
request:
  url: https://crm.example.com/unsubscribe
  auth: { type: bearer, token: "{{secret 'ACME_CRM_TOKEN'}}" }
  body: { json: { email: "{{email}}" } }
`;
const broken = `id: broken
account: acme
name: Broken
request:
  url: https://crm.example.com/unsubscribe
response:
  rules:
    - { when: { json: { path: "$.errors[?(@.code == ", exists: true } }, then: fail }
`;

let dir: string;
let good: string;
let bad: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-validate-'));
  good = path.join(dir, 'good');
  bad = path.join(dir, 'bad');
  await Promise.all([mkdir(good), mkdir(bad)]);
  await writeFile(path.join(good, 'acme.yaml'), withSecret);
  await writeFile(path.join(bad, 'acme.yaml'), withSecret);
  await writeFile(path.join(bad, 'broken.yaml'), broken);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** No secret of the test runner's environment may leak into the child: the one it reads is set or not, here. */
const unset = { ACME_CRM_TOKEN: '', SECRETS_FILE: '', SECRETS_DIR: '' };

describe('validate and secrets', { timeout: 120_000 }, () => {
  it('warns about a referenced secret that is not set, naming connection, file, field and secret', () => {
    const result = cli(['validate', good], unset);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('1 connection(s) valid, 1 warning(s)');
    expect(result.stderr).toMatch(
      /^warning: .*good\/acme\.yaml:6: request\.auth\.token: secret ACME_CRM_TOKEN is not set .*acme-crm/m,
    );
  });

  it('fails under --strict, and passes once the secret is set (environment or SECRETS_FILE)', async () => {
    expect(cli(['validate', '--strict', good], unset).status).toBe(1);
    const strictSet = cli(['validate', '--strict', good], { ...unset, ACME_CRM_TOKEN: 'tok-123' });
    expect(strictSet.status).toBe(0);
    expect(strictSet.stderr).toBe('');
    const secretsFile = path.join(dir, 'secrets.env');
    await writeFile(secretsFile, 'ACME_CRM_TOKEN=tok-from-file\n');
    expect(cli(['validate', '--strict', good], { ...unset, SECRETS_FILE: secretsFile }).status).toBe(0);
  });
});

describe('validate --json', { timeout: 120_000 }, () => {
  it('prints problems and warnings as JSON on stdout and exits non-zero', () => {
    const result = cli(['validate', '--json', bad], unset);
    expect(result.status).toBe(1);
    const report = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      ok: false,
      connections: [{ id: 'acme-crm' }],
      problems: [
        {
          file: expect.stringMatching(/broken\.yaml$/),
          line: 8,
          field: 'response.rules[0].when.json.path',
          reason: expect.stringMatching(/not a valid JSONPath/),
        },
      ],
      warnings: [
        {
          connection: 'acme-crm',
          kind: 'secret_not_set',
          secret: 'ACME_CRM_TOKEN',
          field: 'request.auth.token',
          line: 6,
        },
      ],
    });
  });

  it('answers ok with its warnings, and not ok under --strict', () => {
    const plain = cli(['validate', '--json', good], unset);
    expect(plain.status).toBe(0);
    expect(JSON.parse(plain.stdout)).toMatchObject({
      ok: true,
      problems: [],
      warnings: [{ secret: 'ACME_CRM_TOKEN' }],
    });
    const strict = cli(['validate', '--json', '--strict', good], unset);
    expect(strict.status).toBe(1);
    expect(JSON.parse(strict.stdout)).toMatchObject({ ok: false, warnings: [{ secret: 'ACME_CRM_TOKEN' }] });
  });
});
