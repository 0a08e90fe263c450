/**
 * Setup file of every test file: after the file's own hooks (vitest runs `after` hooks in reverse
 * order, and this one is registered first), drop the PostgreSQL databases the file created and
 * remove the data folders made for its gateways (a test that keeps one for a restart or a look at
 * its files is done with it by then).
 */
import { afterAll } from 'vitest';
import { removeFileTempDirs } from './temp-dirs.js';
import { dropFileDatabases } from './test-databases.js';

afterAll(async () => {
  await dropFileDatabases();
  removeFileTempDirs();
});
