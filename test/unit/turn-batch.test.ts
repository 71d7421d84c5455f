import { describe, expect, it } from 'vitest';
import { TurnBatch, forEachItem } from '../../src/store/turn-batch.js';

describe('TurnBatch', () => {
  it('runs the calls of one turn as one, answering each in order', async () => {
    const runs: number[][] = [];
    const batch = new TurnBatch<number, number>(async (inputs) => {
      runs.push(inputs);
      return inputs.map((n) => n * 10);
    });
    const first = await Promise.all([batch.call(1), batch.call(2), batch.call(3)]);
    const second = await batch.call(4);
    expect(first).toEqual([10, 20, 30]);
    expect(second).toBe(40);
    expect(runs).toEqual([[1, 2, 3], [4]]);
  });

  it('sends a full batch at once and keeps the rest for the end of the turn', async () => {
    const runs: number[][] = [];
    const batch = new TurnBatch<number, number>(async (inputs) => (runs.push(inputs), inputs), 2);
    await Promise.all([1, 2, 3, 4, 5].map((n) => batch.call(n)));
    expect(runs).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('rejects every call of a batch whose run failed, and goes on with the next', async () => {
    let fail = true;
    const batch = new TurnBatch<number, number>(async (inputs) => {
      if (fail) throw new Error('redis went away');
      return inputs;
    });
    const results = await Promise.allSettled([batch.call(1), batch.call(2)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    fail = false;
    expect(await batch.call(3)).toBe(3);
  });
});

describe('forEachItem', () => {
  it('gives each item its own keys and arguments', () => {
    const lua = forEachItem('return {KEYS[2], ARGV[1], ARGV[12]}', 2, 12);
    expect(lua).toContain('local function one(k1, k2, A)');
    expect(lua).toContain('return {k2, A[1], A[12]}');
    expect(lua).toContain('one(KEYS[i * 2 + 1], KEYS[i * 2 + 2], {unpack(ARGV, i * 12 + 1, (i + 1) * 12)})');
  });
});
