/**
 * Global setup of each vitest project: finds the PostgreSQL server for the tests, draws this run's
 * database prefix and provides both to the test files (`inject('postgresTest')`). The teardown
 * drops every database with the prefix, whatever the files left behind (a crashed worker, a
 * failed hook); the setup first drops what killed runs on this machine left. Without a server
 * the PostgreSQL backend is skipped with one notice.
 */
import type { TestProject } from 'vitest/node';
import {
  POSTGRES_TEST_NOTICE_TAG,
  adminUrlFromEnv,
  dropAbandonedDatabases,
  dropDatabasesWithPrefix,
  newRunPrefix,
  unreachableReason,
} from './postgres.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const adminUrl = adminUrlFromEnv();
  const why = adminUrl === undefined ? 'PROXYXAI_TEST_POSTGRES=off' : await unreachableReason(adminUrl);
  if (adminUrl === undefined || why !== undefined) {
    project.provide('postgresTest', null);
    // The `postgres` project only exists when the server answered (vitest.config.ts), so this is
    // the one notice of the run.
    console.warn(
      `${POSTGRES_TEST_NOTICE_TAG} SKIPPED: no PostgreSQL server for the tests (${why}). ` +
        'The store contract suites run on SQLite only and the postgres project (e2e and page tests on ' +
        'PostgreSQL) does not run. Start PostgreSQL or set PROXYXAI_TEST_POSTGRES to an admin URL.',
    );
    return () => Promise.resolve();
  }
  const abandoned = await dropAbandonedDatabases(adminUrl);
  if (abandoned.length > 0) {
    console.warn(`${POSTGRES_TEST_NOTICE_TAG} dropped ${abandoned.length} database(s) of killed test runs`);
  }
  const prefix = newRunPrefix(project.name);
  project.provide('postgresTest', { adminUrl, prefix });
  return async () => {
    const left = await dropDatabasesWithPrefix(adminUrl, prefix);
    if (left.length > 0) {
      console.warn(
        `${POSTGRES_TEST_NOTICE_TAG} dropped ${left.length} database(s) the test files left behind`,
      );
    }
  };
}
