/**
 * Setup file of every test file: after the file's own hooks (vitest runs `after` hooks in reverse
 * order, and this one is registered first), drop the PostgreSQL databases the file created.
 */
import { afterAll } from 'vitest';
import { dropFileDatabases } from './test-databases.js';

afterAll(async () => {
  await dropFileDatabases();
});
