import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests start their own redis-server processes on free ports;
    // two cores, so keep file-level parallelism modest.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
