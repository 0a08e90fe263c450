/**
 * Table types of the store, shared by every dialect. Money columns are integer micro-dollars,
 * times are epoch milliseconds, booleans are 0/1 integers (portable across SQLite and PostgreSQL).
 */
import type { Generated } from 'kysely';

export interface UpstreamKeysTable {
  id: Generated<number>;
  key_hash: string;
  ciphertext: string;
  last4: string;
  status: string;
  reason: string | null;
  last_error: string | null;
  state_until: number | null;
  requests: number;
  failures: number;
  created_at: number;
  updated_at: number;
  disabled_at: number | null;
  /** Keys of one upstream organisation share a group (affinity of the objects they hold). */
  key_group: string | null;
}

export interface AccountsTable {
  id: Generated<number>;
  parent_id: number | null;
  name: string;
  email: string;
  /**
   * `foldKey(name)` and `foldKey(email)` (accounts/account-rules.ts: NFKC, case-folded in every
   * script): the indexed keys an account is looked up by, whatever the spelling asked. Written with
   * every account row (state-writer.ts accountRow); never compared to name/email by SQL lower().
   */
  name_key: string;
  email_key: string;
  alias: string;
  billing_email: string | null;
  key_hash: string;
  partial_key: string;
  level: number;
  rates: number;
  rate_limit: number;
  child_limit: number;
  hard_limit: number;
  soft_limit: number;
  status: number;
  is_root: number;
  /** JSON array of IPs/CIDRs; null = unrestricted. */
  allow_ips: string | null;
  /** JSON array of model names; null = unrestricted. */
  allow_models: string | null;
  /** JSON array of refused endpoint families opened for this account; null = none. */
  allow_endpoints: string | null;
  /** Σ of the credit leases instances hold on this account (0 on an embedded store). */
  leased: Generated<number>;
  credit_granted: number;
  credit_used: number;
  requests: number;
  /** "YYYY-MM" of the last soft-limit notice, so it is sent once per month. */
  soft_notice_month: string | null;
  created_at: number;
  updated_at: number;
}

export interface CreditCardsTable {
  id: Generated<number>;
  account_id: number;
  amount: number;
  balance: number;
  granted_at: number;
  expires_at: number;
  reference: string | null;
}

export interface LedgerTable {
  id: Generated<number>;
  account_id: number;
  kind: string;
  amount: number;
  request_id: string | null;
  note: string | null;
  created_at: number;
}

export interface UsageRecordsTable {
  request_id: string;
  account_id: number;
  model: string;
  path: string;
  day: string;
  prompt_tokens: number;
  cached_tokens: number;
  completion_tokens: number;
  cost: number;
  status: number;
  outcome: string;
  attempts: number;
  usage_source: string;
  created_at: number;
  /** 1 when the answer was a stream (SSE), else 0. */
  stream: number;
  /** Reasoning tokens upstream reported, part of `completion_tokens` (billed as output). */
  reasoning_tokens: number;
  /** Images generated or edited (image endpoints), else 0. */
  images: number;
  /** Audio length in milliseconds (transcription, translation), else 0. */
  audio_ms: number;
  /** Input characters (text to speech), else 0. */
  characters: number;
  /** The account's Rates (micros of a multiplier) when it was charged: a viewer converts from it. */
  rates: number;
  /** Milliseconds from the request's arrival to the end of its answer; null when not one exchange. */
  latency_ms: number | null;
  /** Milliseconds from the request's arrival to the first byte of the answer's body; null if none. */
  ttfb_ms: number | null;
  client_ip: string | null;
  /** The error's code when the gateway refused the request (outcome 'refused'), else null. */
  error_code: string | null;
}

export interface UsageDailyTable {
  account_id: number;
  day: string;
  model: string;
  requests: number;
  cost: number;
  prompt_tokens: number;
  completion_tokens: number;
}

/**
 * An upstream object created through the gateway (file-…, batch_…, resp_…): its owner and the
 * pool key that holds it. `follow` is 'open' while the gateway follows the work for billing (a
 * batch, a background response) with `reserved` set aside; 'done' once it is settled.
 */
export interface ObjectsTable {
  id: string;
  kind: string;
  account_id: number;
  key_id: number;
  key_group: string | null;
  /** The attribute kept for list filters (a file's purpose, a stored completion's model). */
  tag: string | null;
  created_at: number;
  deleted_at: number | null;
  follow: string | null;
  reserved: number;
  /** Usage record id of the settlement (the creating request's id). */
  request_id: string | null;
  model: string | null;
  price_percent: number | null;
  /**
   * The instance that follows the open work (several instances; null on one). Written with the
   * object, moved only by a claim (an UPDATE from a dead owner); batch writes never change it.
   */
  follow_owner: string | null;
}

/** A gateway process using the database, and when it last proved it is alive (server time, ms). */
export interface InstancesTable {
  id: string;
  host: string;
  pid: number;
  started_at: number;
  heartbeat_at: number;
  /** 'sole' (alone, balances in its memory) or 'shared' (one of several, with Redis). */
  mode: Generated<string>;
}

/** A slice of an account's balance one instance may spend locally (several instances). */
export interface LeasesTable {
  account_id: number;
  instance_id: string;
  amount: number;
  updated_at: number;
}

export interface Database {
  upstream_keys: UpstreamKeysTable;
  accounts: AccountsTable;
  credit_cards: CreditCardsTable;
  ledger: LedgerTable;
  usage_records: UsageRecordsTable;
  usage_daily: UsageDailyTable;
  objects: ObjectsTable;
  instances: InstancesTable;
  leases: LeasesTable;
}
