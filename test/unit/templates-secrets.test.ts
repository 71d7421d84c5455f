import { describe, expect, it } from 'vitest';
import { connectionSchema } from '../../src/config/connection-schema.js';
import { checkTemplates, envSecrets } from '../../src/templates/render-request.js';

const connection = (token: string) =>
  connectionSchema.parse({
    id: 'acme',
    account: 'acme',
    name: 'Acme',
    request: { url: 'https://api.example.com/unsubscribe', auth: { type: 'bearer', token } },
  });

describe('reserved secret names', () => {
  it.each([
    'ADMIN_TOKEN',
    'REDIS_URL',
    'EVENTS_WEBHOOK_SECRET',
    'LOG_EMAILS',
    'PATH',
    'npm_config_registry',
    'NODE_OPTIONS',
  ])('refuses {{secret %s}} at validation and never resolves it', (name) => {
    const issues = checkTemplates(connection(`{{secret '${name}'}}`));
    expect(issues).toEqual([
      {
        field: 'request.auth.token',
        reason: expect.stringContaining(`${name} is the engine's own setting`),
      },
    ]);
    expect(envSecrets({ [name]: 'value' }).get(name)).toBeUndefined();
  });

  it('resolves an ordinary connection secret', () => {
    expect(checkTemplates(connection("{{secret 'ACME_CRM_TOKEN'}}"))).toEqual([]);
    expect(envSecrets({ ACME_CRM_TOKEN: 't0ken' }).get('ACME_CRM_TOKEN')).toBe('t0ken');
  });
});
