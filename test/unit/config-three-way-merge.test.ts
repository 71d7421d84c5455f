import { describe, expect, it } from 'vitest';
import { connectionSchema, type Connection } from '../../src/config/connection-schema.js';
import { mergeConnection } from '../../src/config/three-way-merge.js';

const connection = (overrides: Record<string, unknown> = {}): Connection =>
  connectionSchema.parse({
    id: 'acme',
    account: 'acme',
    name: 'Acme',
    campaigns: ['c1'],
    request: { url: 'https://api.example.com/unsubscribe', headers: { Accept: 'application/json' } },
    ...overrides,
  });

const merge = (lastApplied: Connection | undefined, file: Connection, stored?: Connection, force = false) =>
  mergeConnection({
    file,
    deleted: false,
    force,
    ...(lastApplied ? { lastApplied } : {}),
    ...(stored ? { stored } : {}),
  });

describe('three-way merge of a connection file into the store', () => {
  it('changes nothing when the file has not changed since it was last applied, whatever the store holds', () => {
    const file = connection();
    const stored = connection({ campaigns: ['c1', 'c2'], enabled: false, name: 'Renamed' });
    expect(merge(file, file, stored)).toEqual({ kind: 'unchanged' });
  });

  it('keeps a campaign linked through the API when the file changes another field (the reported defect)', () => {
    const last = connection();
    const file = connection({ name: 'Acme - new name' });
    const stored = connection({ campaigns: ['c1', 'c2'] });
    const outcome = merge(last, file, stored);
    expect(outcome.kind).toBe('update');
    if (outcome.kind !== 'update') return;
    expect(outcome.merged.campaigns).toEqual(['c1', 'c2']);
    expect(outcome.merged.name).toBe('Acme - new name');
    expect(outcome.fields).toEqual(['name']);
  });

  it('merges campaign links element by element: what the file added is linked, removed unlinked, API links stay', () => {
    const last = connection({ campaigns: ['c1', 'c3'] });
    const file = connection({ campaigns: ['c1', 'c4'] });
    const stored = connection({ campaigns: ['c1', 'c2', 'c3'] });
    const outcome = merge(last, file, stored);
    expect(outcome).toMatchObject({ kind: 'update', fields: ['campaigns'] });
    if (outcome.kind === 'update') expect(outcome.merged.campaigns).toEqual(['c1', 'c2', 'c4']);
  });

  it('treats "*" as one value: a file switching to "*" wins when the store still has the old list', () => {
    const outcome = merge(connection(), connection({ campaigns: '*' }), connection());
    expect(outcome.kind).toBe('update');
    if (outcome.kind === 'update') expect(outcome.merged.campaigns).toBe('*');
  });

  it('a field changed in the file and through the API since the last apply is a conflict, the store untouched', () => {
    const last = connection();
    const file = connection({ request: { url: 'https://api.example.com/v2/unsubscribe' } });
    const stored = connection({ request: { url: 'https://api.example.com/v3/unsubscribe' } });
    const outcome = merge(last, file, stored);
    expect(outcome).toEqual({
      kind: 'conflict',
      conflicts: [
        {
          path: 'request.url',
          lastApplied: 'https://api.example.com/unsubscribe',
          file: 'https://api.example.com/v2/unsubscribe',
          stored: 'https://api.example.com/v3/unsubscribe',
        },
      ],
    });
  });

  it('the same change made on both sides is no conflict', () => {
    const last = connection();
    const both = connection({ enabled: false });
    expect(merge(last, both, both)).toEqual({ kind: 'unchanged' });
  });

  it('keeps an API change to a field the file did not touch (a disable survives a file edit)', () => {
    const last = connection();
    const file = connection({ name: 'New' });
    const stored = connection({ enabled: false });
    const outcome = merge(last, file, stored);
    expect(outcome.kind).toBe('update');
    if (outcome.kind === 'update') {
      expect(outcome.merged.enabled).toBe(false);
      expect(outcome.merged.name).toBe('New');
    }
  });

  it('adds and removes leaves the file added or removed (headers as fields of their own)', () => {
    const last = connection();
    const file = connection({
      request: { url: 'https://api.example.com/unsubscribe', headers: { 'X-New': '1' } },
    });
    const stored = connection({ settings: { listId: '9' } });
    const outcome = merge(last, file, stored);
    expect(outcome.kind).toBe('update');
    if (outcome.kind !== 'update') return;
    expect(outcome.fields.sort()).toEqual(['request.headers.Accept', 'request.headers.X-New']);
    expect((outcome.merged.request as { headers: unknown }).headers).toEqual({ 'X-New': '1' });
    expect(outcome.merged.settings).toEqual({ listId: '9' });
  });

  it('--force: the file wins its conflicting fields, and other API changes stay', () => {
    const last = connection();
    const file = connection({ request: { url: 'https://api.example.com/v2/unsubscribe' } });
    const stored = connection({
      request: { url: 'https://api.example.com/v3/unsubscribe' },
      campaigns: ['c1', 'c2'],
    });
    const outcome = merge(last, file, stored, true);
    expect(outcome.kind).toBe('update');
    if (outcome.kind !== 'update') return;
    expect((outcome.merged.request as { url: string }).url).toBe('https://api.example.com/v2/unsubscribe');
    expect(outcome.merged.campaigns).toEqual(['c1', 'c2']);
  });

  it('with no last-applied file (created through the API), each difference is a conflict and campaigns are added', () => {
    const file = connection({ campaigns: ['c9'], name: 'From a file' });
    const stored = connection({ campaigns: ['c1'] });
    expect(merge(undefined, file, stored)).toMatchObject({
      kind: 'conflict',
      conflicts: [{ path: 'name', file: 'From a file', stored: 'Acme' }],
    });
    const agreeing = merge(undefined, connection({ campaigns: ['c9'] }), stored);
    expect(agreeing.kind).toBe('update');
    if (agreeing.kind === 'update') expect(agreeing.merged.campaigns).toEqual(['c1', 'c9']);
  });

  it('creates a connection that is neither stored nor deleted', () => {
    const file = connection();
    expect(merge(undefined, file)).toEqual({ kind: 'create', connection: file });
  });

  it('a deleted connection stays deleted while its file is unchanged; a changed file is a conflict; --force creates it', () => {
    const file = connection();
    const deleted = (f: Connection, force = false) =>
      mergeConnection({ lastApplied: connection(), file: f, deleted: true, force });
    expect(deleted(file)).toEqual({ kind: 'deleted' });
    const changed = connection({ name: 'Edited' });
    expect(deleted(changed).kind).toBe('conflict');
    expect(deleted(changed, true)).toEqual({ kind: 'create', connection: changed });
  });
});
