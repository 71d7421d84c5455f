import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration and e2e files each own a Redis key prefix, so files can run in parallel;
    // two cores is all CI has, so cap the pool.
    maxWorkers: 2,
  },
});
