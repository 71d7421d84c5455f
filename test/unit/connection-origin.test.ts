import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectionSchema } from '../../src/config/connection-schema.js';
import { TemplateError } from '../../src/errors.js';
import { connectionSourceName } from '../../src/config/connection-origin.js';
import { unsentVerdict } from '../../src/queue/delivery-outcome.js';

const connection = connectionSchema.parse({
  id: 'acme',
  account: 'acme',
  name: 'Acme',
  request: { url: 'https://api.crm.example/v1' },
});

describe('a delivery that cannot render names where its connection came from', () => {
  it('names a file inside the working directory by its relative path', () => {
    const source = path.join(process.cwd(), 'connections', 'acme.yaml');
    expect(connectionSourceName({ connection, source })).toBe(path.join('connections', 'acme.yaml'));
    expect(connectionSourceName({ connection, source: '/etc/relay/acme.yml' })).toBe('/etc/relay/acme.yml');
    expect(connectionSourceName({ connection, source: 'admin-api' })).toBe('connection acme (admin-api)');
    expect(connectionSourceName({ connection })).toBe('connection acme');
    expect(connectionSourceName({ connection, origin: { via: 'start', file: source } })).toBe(
      path.join('connections', 'acme.yaml'),
    );
    expect(connectionSourceName({ connection, origin: { via: 'cli', by: 'jane@cli' } })).toBe(
      'connection acme (cli (jane@cli))',
    );
  });

  it('puts origin and field in the template error verdict', () => {
    const error = new TemplateError('acme', 'request.auth.token', 'secret "ACME_KEY" is not set');
    expect(unsentVerdict(error, 'connections/acme.yaml')).toMatchObject({
      verdict: 'fail',
      code: 'TEMPLATE_ERROR',
      reason: 'connections/acme.yaml: request.auth.token: secret "ACME_KEY" is not set',
    });
  });
});
