/**
 * Where the settlement journal of a store lives. An embedded store's file belongs to one process:
 * its journal is `DATA_DIR/journal`. A database server may hold several stores that gateways run
 * from the same working directory (and DATA_DIR): each one's journal is named after its location,
 * so a journal is never replayed into another database.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';

export function journalFolder(
  dataDir: string,
  store: { readonly location: string; readonly instances: unknown },
): string {
  if (store.instances === undefined) return join(dataDir, 'journal');
  const tag = createHash('sha256').update(store.location).digest('hex').slice(0, 12);
  return join(dataDir, `journal-${tag}`);
}
