/**
 * Persistence of upstream keys (the store is the truth across restarts; the pool is the truth in
 * between). Written with Kysely so it runs on every backend the store supports.
 */
import { sql, type Kysely, type Selectable } from 'kysely';
import type { Database, UpstreamKeysTable } from '../store/schema.js';
import type { KeyState, KeyStatus } from './key-state.js';

export interface StoredKey {
  readonly id: number;
  readonly ciphertext: string;
  readonly last4: string;
  readonly state: KeyState;
  readonly requests: number;
  readonly failures: number;
  readonly lastError: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly group: string | null;
}

export interface KeyStateWrite {
  readonly status: KeyStatus;
  readonly reason: string | null;
  readonly stateUntil: number | null;
  readonly disabledAt: number | null;
  readonly lastError: string | null;
  readonly updatedAt: number;
}

export interface KeyRepository {
  list(): Promise<StoredKey[]>;
  /** One key, or undefined when no such key is stored (deleted, or never there). */
  get(id: number): Promise<StoredKey | undefined>;
  /** The id of the key with this fingerprint, if one is stored. */
  idOf(keyHash: string): Promise<number | undefined>;
  /**
   * Inserts a key; undefined when its fingerprint already exists, also when another instance
   * inserted it a moment earlier (the unique fingerprint decides, no error is raised).
   */
  insert(k: {
    keyHash: string;
    ciphertext: string;
    last4: string;
    group: string | null;
    now: number;
  }): Promise<StoredKey | undefined>;
  /** Writes a state unconditionally (an administrator's decision). */
  updateState(id: number, s: KeyStateWrite): Promise<void>;
  /**
   * Writes a state the key's health led to, unless the stored key is disabled (only an
   * administrator enables a key again; another instance may have disabled it meanwhile). False
   * when nothing was written: the key is disabled or gone.
   */
  updateHealth(id: number, s: KeyStateWrite): Promise<boolean>;
  updateGroup(id: number, group: string | null, now: number): Promise<void>;
  addCounters(
    batch: ReadonlyArray<{ id: number; requests: number; failures: number; lastError: string | null }>,
    now: number,
  ): Promise<void>;
  delete(id: number): Promise<void>;
}

/** The largest id an `integer` column holds. */
const MAX_ID = 2_147_483_647;

/**
 * Keys per counter UPDATE (4 parameters each, well under SQLite's 32,766 and PostgreSQL's 65,535),
 * small enough that one runs in about a millisecond.
 */
const COUNTER_CHUNK = 250;

export function createKeyRepository(db: Kysely<Database>): KeyRepository {
  return {
    async list() {
      const rows = await db.selectFrom('upstream_keys').selectAll().orderBy('id').execute();
      return rows.map(toStored);
    },
    async get(id) {
      // Ids are 32-bit integers on every backend; PostgreSQL would refuse a larger one.
      if (!Number.isSafeInteger(id) || id < 1 || id > MAX_ID) return undefined;
      const row = await db.selectFrom('upstream_keys').selectAll().where('id', '=', id).executeTakeFirst();
      return row === undefined ? undefined : toStored(row);
    },
    async idOf(keyHash) {
      const row = await db
        .selectFrom('upstream_keys')
        .select('id')
        .where('key_hash', '=', keyHash)
        .executeTakeFirst();
      return row?.id;
    },
    async insert(k) {
      // The unique fingerprint decides duplicates, also between two concurrent adds of one key.
      const row = await db
        .insertInto('upstream_keys')
        .values({
          key_hash: k.keyHash,
          ciphertext: k.ciphertext,
          last4: k.last4,
          status: 'active',
          reason: null,
          last_error: null,
          state_until: null,
          requests: 0,
          failures: 0,
          created_at: k.now,
          updated_at: k.now,
          disabled_at: null,
          key_group: k.group,
        })
        .onConflict((oc) => oc.column('key_hash').doNothing())
        .returning('id')
        .executeTakeFirst();
      if (row === undefined) return undefined;
      return {
        id: row.id,
        ciphertext: k.ciphertext,
        last4: k.last4,
        state: { kind: 'active' },
        requests: 0,
        failures: 0,
        lastError: null,
        createdAt: k.now,
        updatedAt: k.now,
        group: k.group,
      };
    },
    async updateGroup(id, group, now) {
      await db
        .updateTable('upstream_keys')
        .set({ key_group: group, updated_at: now })
        .where('id', '=', id)
        .execute();
    },
    async updateState(id, s) {
      await db.updateTable('upstream_keys').set(stateColumns(s)).where('id', '=', id).execute();
    },
    async updateHealth(id, s) {
      const r = await db
        .updateTable('upstream_keys')
        .set(stateColumns(s))
        .where('id', '=', id)
        .where('status', '<>', 'disabled')
        .executeTakeFirst();
      return r.numUpdatedRows > 0n;
    },
    async addCounters(batch, now) {
      // One UPDATE … FROM (VALUES …) per chunk instead of one statement per key: with 10,000 pool
      // keys the periodic flush was 10,000 statements (150–200 ms of event loop). VALUES columns
      // are named column1… by SQLite and PostgreSQL alike; the casts give PostgreSQL their types.
      // Each chunk is its own transaction, with a turn of the event loop between two: on an
      // embedded store a statement runs synchronously, and 10,000 keys in one go held the loop
      // ≈ 30 ms. Counters are statistics: they need no atomicity across keys.
      for (let at = 0; at < batch.length; at += COUNTER_CHUNK) {
        if (at > 0) await new Promise((r) => setImmediate(r));
        const rows = batch
          .slice(at, at + COUNTER_CHUNK)
          .map(
            (b) =>
              sql`(cast(${b.id} as integer), cast(${b.requests} as bigint), cast(${b.failures} as bigint), cast(${storable(b.lastError)} as text))`,
          );
        await sql`update upstream_keys
          set requests = upstream_keys.requests + v.column2,
              failures = upstream_keys.failures + v.column3,
              last_error = v.column4,
              updated_at = ${now}
          from (values ${sql.join(rows)}) as v
          where upstream_keys.id = v.column1`.execute(db);
      }
    },
    async delete(id) {
      await db.deleteFrom('upstream_keys').where('id', '=', id).execute();
    },
  };
}

function toStored(r: Selectable<UpstreamKeysTable>): StoredKey {
  return {
    id: r.id,
    ciphertext: r.ciphertext,
    last4: r.last4,
    state: toState(r.status, r.reason, r.state_until, r.disabled_at),
    requests: Number(r.requests),
    failures: Number(r.failures),
    lastError: r.last_error,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    group: r.key_group,
  };
}

function stateColumns(s: KeyStateWrite) {
  return {
    status: s.status,
    reason: s.reason,
    state_until: s.stateUntil,
    disabled_at: s.disabledAt,
    last_error: storable(s.lastError),
    updated_at: s.updatedAt,
  };
}

/**
 * Upstream error text may hold a NUL, which PostgreSQL text refuses (and the whole counter flush
 * with it); it is kept as U+FFFD on every backend.
 */
function storable(text: string | null): string | null {
  return text !== null && text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}

function toState(
  status: string,
  reason: string | null,
  until: number | null,
  disabledAt: number | null,
): KeyState {
  switch (status) {
    case 'cooling':
      return { kind: 'cooling', until: Number(until ?? 0), reason: reason ?? '' };
    case 'parked':
      return { kind: 'parked', reason: reason ?? 'insufficient_quota', probeAt: Number(until ?? 0) };
    case 'disabled':
      return { kind: 'disabled', reason: reason ?? '', at: Number(disabledAt ?? 0) };
    default:
      return { kind: 'active' };
  }
}
