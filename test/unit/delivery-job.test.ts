import { describe, expect, it } from 'vitest';
import { partsOfDeliveryId, readDeliveryJob } from '../../src/domain/delivery.js';
import { ledgerValue, parseLedgerRecord } from '../../src/store/ledger.js';

const unsubscribeId = '0b9f6a52-1d3e-4e1a-9a55-2f3c5d6e7f80';
const unsubscribe = {
  id: unsubscribeId,
  account: 'acme',
  email: 'jane@example.com',
  receivedAt: '2026-12-01T10:00:00.000Z',
  attributes: {},
};

describe('delivery jobs', () => {
  it('take who they are for from their id, and only adjustments from their data', () => {
    expect(readDeliveryJob({ id: `${unsubscribeId}:acme-crm`, data: {} })).toEqual({
      deliveryId: `${unsubscribeId}:acme-crm`,
      unsubscribeId,
      connectionId: 'acme-crm',
    });
    expect(
      readDeliveryJob({ id: `${unsubscribeId}:acme-crm`, data: { pinVersion: 3, batchSplit: 25 } }),
    ).toMatchObject({ pinVersion: 3, batchSplit: 25 });
  });

  it('still read the shape earlier versions queued, with the unsubscribe inside', () => {
    const job = readDeliveryJob({
      id: `${unsubscribeId}:acme-crm`,
      data: { unsubscribe, connectionId: 'acme-crm', pinVersion: 2 },
    });
    expect(job).toEqual({
      deliveryId: `${unsubscribeId}:acme-crm`,
      unsubscribeId,
      connectionId: 'acme-crm',
      unsubscribe,
      pinVersion: 2,
    });
  });

  it('refuse data that is neither shape', () => {
    expect(() => readDeliveryJob({ id: `${unsubscribeId}:acme-crm`, data: { pinVersion: 0 } })).toThrow();
    expect(() => readDeliveryJob({ id: `${unsubscribeId}:acme-crm`, data: 'x' })).toThrow();
  });

  it('split ids at the first colon: connection ids may hold none, UUIDs never do', () => {
    expect(partsOfDeliveryId(`${unsubscribeId}:a.b-c`)).toEqual({ unsubscribeId, connectionId: 'a.b-c' });
    expect(partsOfDeliveryId('no-colon')).toEqual({ unsubscribeId: 'no-colon', connectionId: '' });
  });
});

describe('ledger records', () => {
  it('read back what is written', () => {
    const record = { unsubscribe, connections: ['acme-crm', 'acme-esp'] };
    expect(parseLedgerRecord(ledgerValue(record))).toEqual(record);
  });

  it('read nothing from a missing, malformed or foreign value', () => {
    expect(parseLedgerRecord(null)).toBeUndefined();
    expect(parseLedgerRecord('not json')).toBeUndefined();
    expect(parseLedgerRecord('{"unsubscribe":{"id":"x"},"connections":[]}')).toBeUndefined();
  });

  it('read an entry without its connections as fanned out to none', () => {
    expect(parseLedgerRecord(JSON.stringify({ unsubscribe }))).toEqual({ unsubscribe, connections: [] });
  });
});
