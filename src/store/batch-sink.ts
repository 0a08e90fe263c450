/**
 * What one flush of the state writer hands to the store: dirty accounts with their full card
 * lists, deleted accounts, the queued ledger, usage and per-day aggregate rows, and the upstream
 * objects created, deleted or settled since the last flush. A sink writes
 * it in ONE transaction. Each backend has its own sink (same contract, mirrored file names).
 */
import type { Insertable } from 'kysely';
import type {
  AccountsTable,
  CreditCardsTable,
  LedgerTable,
  ObjectsTable,
  UsageDailyTable,
  UsageRecordsTable,
} from './schema.js';

export type AccountRow = Insertable<AccountsTable> & { id: number };
export type CardRow = Omit<Insertable<CreditCardsTable>, 'id' | 'account_id'>;
export type LedgerRow = Omit<LedgerTable, 'id'>;
export type UsageRow = UsageRecordsTable;
export type DailyRow = UsageDailyTable;
/** The whole row of an upstream object (upserted by id: created, deleted, followed, settled). */
export type ObjectRow = ObjectsTable;

export interface Batch {
  accounts: AccountRow[];
  cards: Map<number, CardRow[]>;
  deleted: number[];
  ledger: LedgerRow[];
  usage: UsageRow[];
  daily: DailyRow[];
  objects: ObjectRow[];
}

export interface BatchSink {
  /** Writes the whole batch atomically; rejects (writing nothing) on failure. */
  write(batch: Batch): Promise<void>;
}
