// Two projects: `sqlite` runs every test on the embedded store (the store contract suites loop over
// every backend present, PostgreSQL included); `postgres` runs the end-to-end and page tests again
// with each gateway in a fresh PostgreSQL schema. Without a reachable server the `postgres`
// project is left out and the sqlite project's global setup says so once.
import { availableParallelism } from 'node:os';
import { defineConfig, type TestProjectConfiguration, type ViteUserConfig } from 'vitest/config';
import { adminUrlFromEnv, unreachableReason } from './test/support/postgres.js';

export default defineConfig(async (): Promise<ViteUserConfig> => {
  const adminUrl = adminUrlFromEnv();
  const postgres = adminUrl !== undefined && (await unreachableReason(adminUrl)) === undefined;
  const shared = {
    globalSetup: ['test/support/postgres-global-setup.ts'],
    setupFiles: ['test/support/file-setup.ts'],
  };
  return {
    test: {
      testTimeout: 30_000,
      hookTimeout: 30_000,
      pool: 'forks',
      // Vitest's default is one fork less than the cores: a single fork on a 2-core machine. The
      // files mostly wait (timers, sockets, PostgreSQL, Chromium), and running the end-to-end and
      // page tests on both stores doubles them, so at least two forks run side by side.
      maxWorkers: Math.max(2, availableParallelism() - 1),
      projects: [
        {
          extends: true,
          test: { name: 'sqlite', include: ['test/**/*.test.ts', 'src/**/*.test.ts'], ...shared },
        },
        ...(postgres
          ? ([
              {
                extends: true,
                test: {
                  name: 'postgres',
                  include: ['test/e2e/**/*.test.ts', 'test/pages/**/*.test.ts'],
                  // test/support/gateway.ts opens every gateway on its own database.
                  env: { PROXYXAI_TEST_STORE: 'postgres' },
                  ...shared,
                },
              },
            ] satisfies TestProjectConfiguration[])
          : []),
      ],
    },
  };
});
