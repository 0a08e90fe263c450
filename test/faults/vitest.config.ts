// `npm run test:faults` (vitest run --config test/faults/vitest.config.ts): the fault suite, real
// gateway processes killed, stopped and starved of their store under load, with the end-to-end
// shutdown test. Its files end in `.fault.ts`, so `npm test` leaves them out: they take a few
// minutes. One file at a time, so the kills and load of one test do not skew another's timings.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The repository, as for `npm test` (paths below and in the tests are relative to it).
    root: fileURLToPath(new URL('../..', import.meta.url)),
    // With the shared backend (PostgreSQL + Redis, when a server is there): kill -9 of an instance,
    // a kill between two flushes, Redis restarted empty, PostgreSQL away 30 s (also in npm test).
    include: ['test/faults/**/*.fault.ts', 'test/e2e/shutdown.test.ts', 'test/e2e/cluster-processes.test.ts'],
    globalSetup: ['test/support/postgres-global-setup.ts'],
    setupFiles: ['test/support/file-setup.ts'],
    testTimeout: 600_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
