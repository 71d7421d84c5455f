import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The chaos suite kills processes and floods the engine: `npm run test:chaos` runs it alone.
    exclude: [...configDefaults.exclude, 'test/chaos/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration and e2e files each own a Redis key prefix, so files can run in parallel;
    // two cores is all CI has, so cap the pool.
    maxWorkers: 2,
  },
});
