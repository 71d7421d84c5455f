import path from 'node:path';
import { defineConfig } from 'vitest/config';

// `npm run test:chaos`: the operator's-worst-night checks (docs/reliability.md). Each file kills
// processes, floods the engine or waits out retries, so they run one at a time with long timeouts:
// on two shared cores a file that runs beside another only measures the other.
export default defineConfig({
  // The repository's root, wherever the config lives, so paths and the default excludes hold.
  root: path.resolve(import.meta.dirname, '../..'),
  test: {
    include: ['test/chaos/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    maxWorkers: 1,
  },
});
