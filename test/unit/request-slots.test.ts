import { describe, expect, it } from 'vitest';
import { RequestSlots } from '../../src/queue/request-slots.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('RequestSlots', () => {
  it('lets `size` requests of one connection open at once, and the next in line as one closes', async () => {
    const slots = new RequestSlots(2);
    const order: string[] = [];
    const a = await slots.take('crm');
    const b = await slots.take('crm');
    const c = slots.take('crm').then((release) => (order.push('c'), release));
    const d = slots.take('crm').then((release) => (order.push('d'), release));
    await tick();
    expect(order).toEqual([]);
    expect(slots.usage('crm')).toEqual({ open: 2, waiting: 2 });
    b();
    const releaseC = await c;
    expect(order).toEqual(['c']);
    expect(slots.usage('crm')).toEqual({ open: 2, waiting: 1 });
    a();
    (await d)();
    releaseC();
    expect(order).toEqual(['c', 'd']);
    expect(slots.usage('crm')).toEqual({ open: 0, waiting: 0 });
  });

  it('gives the next slot to one asked for first, ahead of those already waiting', async () => {
    const slots = new RequestSlots(1);
    const order: string[] = [];
    const held = await slots.take('crm');
    const waiting = slots.take('crm').then((release) => (order.push('waiting'), release));
    const admitted = slots.take('crm', { first: true }).then((release) => (order.push('first'), release));
    await tick();
    expect(slots.usage('crm')).toEqual({ open: 1, waiting: 2 });
    held();
    (await admitted)();
    (await waiting)();
    expect(order).toEqual(['first', 'waiting']);
    expect(slots.usage('crm')).toEqual({ open: 0, waiting: 0 });
  });

  it("keeps each connection's slots apart", async () => {
    const slots = new RequestSlots(1);
    const one = await slots.take('a');
    const other = await slots.take('b');
    expect(slots.usage('a')).toEqual({ open: 1, waiting: 0 });
    expect(slots.usage('b')).toEqual({ open: 1, waiting: 0 });
    one();
    other();
  });

  it('gives a slot back once, however often its release is called', async () => {
    const slots = new RequestSlots(1);
    const release = await slots.take('crm');
    release();
    release();
    const again = await slots.take('crm');
    const queued = slots.take('crm');
    await tick();
    expect(slots.usage('crm')).toEqual({ open: 1, waiting: 1 });
    again();
    (await queued)();
    expect(slots.usage('crm')).toEqual({ open: 0, waiting: 0 });
  });

  it('gives the slot back when the work fails', async () => {
    const slots = new RequestSlots(1);
    await expect(slots.run('crm', () => Promise.reject(new Error('refused')))).rejects.toThrow('refused');
    expect(slots.usage('crm')).toEqual({ open: 0, waiting: 0 });
    expect(await slots.run('crm', () => Promise.resolve(7))).toBe(7);
  });

  it('refuses a size below one', () => {
    expect(() => new RequestSlots(0)).toThrow(/size 0/);
  });
});
