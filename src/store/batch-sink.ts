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

/**
 * `usage_source` of a request refused at the gates, before admission (Meter.logRefusal): a row of
 * the request log only, never a request of the account (counters, daily totals).
 */
export const GATE_REFUSAL = 'gate';

/** The request log's columns of a usage row that says nothing more (work not one exchange). */
export const NO_LOG_DETAIL = {
  stream: 0,
  reasoning_tokens: 0,
  images: 0,
  audio_ms: 0,
  characters: 0,
  rates: 1_000_000,
  latency_ms: null,
  ttfb_ms: null,
  client_ip: null,
  error_code: null,
} as const satisfies Partial<UsageRow>;
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
