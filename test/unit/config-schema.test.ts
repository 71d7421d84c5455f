import { describe, expect, it } from 'vitest';
import { connectionSchema } from '../../src/config/connection-schema.js';
import { parseDuration } from '../../src/config/duration.js';
import { parseEnv } from '../../src/config/env.js';
import { parseConnectionFile, zodIssues } from '../../src/config/load-connections.js';
import { InputError } from '../../src/errors.js';

const valid = `
id: acme-sendgrid
account: acme
name: Acme - SendGrid
campaigns: [spring-sale]
request:
  url: https://api.sendgrid.com/v3/asm/suppressions/global
  auth: { type: bearer, token: "{{secret 'ACME_SENDGRID_KEY'}}" }
  body:
    json: { recipient_emails: ["{{email}}"] }
response:
  rules:
    - { when: { status: [200, 201] }, then: success }
    - { otherwise: fail }
retry: { attempts: 10, backoff: exponential, delay: 5s, maxDelay: 1h }
`;

describe('durations', () => {
  it.each([
    ['500ms', 500],
    ['5s', 5_000],
    ['1.5m', 90_000],
    ['1h', 3_600_000],
    ['10d', 864_000_000],
    [250, 250],
  ] as const)('%s → %i ms', (input, ms) => expect(parseDuration(input)).toBe(ms));
  it.each(['5', '5 sec', '-1s', 'soon'])('refuses %s', (input) =>
    expect(parseDuration(input)).toBeUndefined(),
  );
});

describe('connection files', () => {
  it('validates the design sketch and applies defaults', () => {
    const { connection, issues } = parseConnectionFile(valid, 'acme.yaml');
    expect(issues).toEqual([]);
    expect(connection).toMatchObject({
      enabled: true,
      request: {
        method: 'POST',
        timeouts: { connect: 5_000, headers: 10_000, body: 10_000 },
        maxResponseBytes: 65_536,
      },
      retry: { attempts: 10, delay: 5_000, maxDelay: 3_600_000, jitter: true },
    });
  });

  it('names the file, the field and the reason for every problem', () => {
    const broken = valid
      .replace('type: bearer', 'type: beare')
      .replace('attempts: 10', 'attempts: 0')
      .replace('delay: 5s', 'delay: soon')
      .replace('campaigns: [spring-sale]', 'campaigns: [spring-sale]\nlimitz: 3');
    const { connection, issues } = parseConnectionFile(broken, 'connections/acme.yaml');
    expect(connection).toBeUndefined();
    const byField = Object.fromEntries(issues.map((issue) => [issue.field, issue.reason]));
    expect(issues.every((issue) => issue.file === 'connections/acme.yaml')).toBe(true);
    expect(byField.limitz).toBe('unknown field; did you mean "limits"?');
    expect(byField['request.auth.type']).toMatch(/none|api_key|basic|bearer/);
    expect(byField['retry.attempts']).toMatch(/>=1|at least|too small/i);
    expect(byField['retry.delay']).toContain('"soon" is not a duration');
  });

  it('reports YAML syntax errors with the file', () => {
    const { issues } = parseConnectionFile('id: [unclosed', 'bad.yaml');
    expect(issues[0]).toMatchObject({ file: 'bad.yaml', field: '' });
    expect(issues[0]!.reason).toMatch(/^YAML: /);
  });

  it('refuses bad status matches and regular expressions', () => {
    const result = connectionSchema.safeParse({
      id: 'x',
      account: 'a',
      name: 'x',
      request: { url: 'https://example.com' },
      response: {
        rules: [
          { when: { status: '6xx' }, then: 'success' },
          { when: { bodyMatches: '(' }, then: 'fail' },
        ],
      },
    });
    expect(result.success).toBe(false);
    const fields = zodIssues(result.error!).map((issue) => issue.field);
    expect(fields).toContain('response.rules[0].when.status');
    expect(fields).toContain('response.rules[1].when.bodyMatches');
  });
});

describe('environment', () => {
  it('has working defaults', () => {
    const env = parseEnv({});
    expect(env).toMatchObject({
      PORT: 8080,
      REDIS_URL: 'redis://127.0.0.1:6379',
      CONNECTIONS_DIR: './connections',
      ALLOW_PRIVATE_TARGETS: false,
      SANDBOX: 'auto',
    });
    expect([...env.ROLES]).toEqual(['api', 'worker']);
  });
  it('names each bad variable', () => {
    expect(() => parseEnv({ PORT: 'http', ROLES: 'api,cron' })).toThrow(InputError);
    try {
      parseEnv({ PORT: 'http', ROLES: 'api,cron' });
    } catch (error) {
      expect(Object.keys((error as InputError).fields).sort()).toEqual(['PORT', 'ROLES']);
    }
  });
  it('refuses a ledger retention shorter than failed deliveries are kept (they are replayed from it)', () => {
    expect(() => parseEnv({ RETENTION_FAILED: '30d', RETENTION_UNSUBSCRIBES: '7d' })).toThrow(
      /RETENTION_UNSUBSCRIBES: must be at least RETENTION_FAILED/,
    );
    expect(parseEnv({ RETENTION_FAILED: '7d', RETENTION_UNSUBSCRIBES: '7d' }).RETENTION_UNSUBSCRIBES).toBe(
      7 * 86_400_000,
    );
  });
});
