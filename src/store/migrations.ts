/**
 * Versioned schema migrations, run by Kysely's Migrator at start-up. Written with the schema
 * builder so they run on SQLite and PostgreSQL alike; the dialect differences (how an
 * auto-incrementing key, a 64-bit integer and bytewise-ordered text are declared) come in as
 * capabilities, not as `if (sqlite)` in callers.
 */
import { sql, type ColumnDataType, type ColumnDefinitionBuilder, type CompiledQuery } from 'kysely';
import type { Expression, Kysely, Migration, MigrationProvider } from 'kysely';
import { foldKey } from '../accounts/account-rules.js';

export interface DialectCaps {
  /** Adds the dialect's auto-increment primary key to a column builder. */
  readonly autoId: (col: ColumnDefinitionBuilder) => ColumnDefinitionBuilder;
  /** Column type for 64-bit integers (money, epoch ms). */
  readonly bigint: 'integer' | 'bigint';
  /**
   * Column type for text that compares and sorts bytewise, as SQLite's default BINARY collation
   * does: ids, days and model names then order the same on every backend, whatever the database's
   * locale (cursor pages over object ids, dashboard lines sorted by model).
   */
  readonly text: ColumnDataType | Expression<unknown>;
}

export function migrations(caps: DialectCaps): Record<string, Migration> {
  const big = caps.bigint;
  const text = caps.text;
  return {
    '0001_upstream_keys': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('upstream_keys')
          .addColumn('id', 'integer', (c) => caps.autoId(c))
          .addColumn('key_hash', text, (c) => c.notNull().unique())
          .addColumn('ciphertext', text, (c) => c.notNull())
          .addColumn('last4', text, (c) => c.notNull())
          .addColumn('status', text, (c) => c.notNull())
          .addColumn('reason', text)
          .addColumn('last_error', text)
          .addColumn('state_until', big)
          .addColumn('requests', big, (c) => c.notNull().defaultTo(0))
          .addColumn('failures', big, (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('updated_at', big, (c) => c.notNull())
          .addColumn('disabled_at', big)
          .execute();
      },
    },
    '0002_accounts_and_money': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('accounts')
          .addColumn('id', 'integer', (c) => caps.autoId(c))
          .addColumn('parent_id', 'integer')
          .addColumn('name', text, (c) => c.notNull())
          .addColumn('email', text, (c) => c.notNull())
          .addColumn('alias', text, (c) => c.notNull())
          .addColumn('billing_email', text)
          .addColumn('key_hash', text, (c) => c.notNull().unique())
          .addColumn('partial_key', text, (c) => c.notNull())
          .addColumn('level', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('rates', big, (c) => c.notNull())
          .addColumn('rate_limit', big, (c) => c.notNull())
          .addColumn('child_limit', big, (c) => c.notNull())
          .addColumn('hard_limit', big, (c) => c.notNull())
          .addColumn('soft_limit', big, (c) => c.notNull())
          .addColumn('status', 'integer', (c) => c.notNull().defaultTo(1))
          .addColumn('is_root', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('allow_ips', text)
          .addColumn('allow_models', text)
          .addColumn('credit_granted', big, (c) => c.notNull().defaultTo(0))
          .addColumn('credit_used', big, (c) => c.notNull().defaultTo(0))
          .addColumn('requests', big, (c) => c.notNull().defaultTo(0))
          .addColumn('soft_notice_month', text)
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('updated_at', big, (c) => c.notNull())
          .execute();
        await db.schema.createIndex('accounts_parent').on('accounts').column('parent_id').execute();
        // Name and e-mail uniqueness (case-insensitive) is enforced in memory by the registry; a UNIQUE
        // constraint here could make a batch that swaps two names fail forever, so these are plain indexes.
        await db.schema.createIndex('accounts_name').on('accounts').column('name').execute();
        await db.schema.createIndex('accounts_email').on('accounts').column('email').execute();
        await db.schema
          .createTable('credit_cards')
          .addColumn('id', 'integer', (c) => caps.autoId(c))
          .addColumn('account_id', 'integer', (c) => c.notNull())
          .addColumn('amount', big, (c) => c.notNull())
          .addColumn('balance', big, (c) => c.notNull())
          .addColumn('granted_at', big, (c) => c.notNull())
          .addColumn('expires_at', big, (c) => c.notNull())
          .addColumn('reference', text)
          .execute();
        await db.schema.createIndex('credit_cards_account').on('credit_cards').column('account_id').execute();
        await db.schema
          .createTable('ledger')
          .addColumn('id', 'integer', (c) => caps.autoId(c))
          .addColumn('account_id', 'integer', (c) => c.notNull())
          .addColumn('kind', text, (c) => c.notNull())
          .addColumn('amount', big, (c) => c.notNull())
          .addColumn('request_id', text)
          .addColumn('note', text)
          .addColumn('created_at', big, (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('ledger_account')
          .on('ledger')
          .columns(['account_id', 'created_at'])
          .execute();
        await db.schema
          .createTable('usage_records')
          .addColumn('request_id', text, (c) => c.primaryKey())
          .addColumn('account_id', 'integer', (c) => c.notNull())
          .addColumn('model', text, (c) => c.notNull())
          .addColumn('path', text, (c) => c.notNull())
          .addColumn('day', text, (c) => c.notNull())
          .addColumn('prompt_tokens', big, (c) => c.notNull())
          .addColumn('cached_tokens', big, (c) => c.notNull())
          .addColumn('completion_tokens', big, (c) => c.notNull())
          .addColumn('cost', big, (c) => c.notNull())
          .addColumn('status', 'integer', (c) => c.notNull())
          .addColumn('outcome', text, (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull())
          .addColumn('usage_source', text, (c) => c.notNull())
          .addColumn('created_at', big, (c) => c.notNull())
          .execute();
        // The dashboards read the per-day aggregates in usage_daily; the request log's indexes
        // came with 0008.
        await db.schema
          .createTable('usage_daily')
          .addColumn('account_id', 'integer', (c) => c.notNull())
          .addColumn('day', text, (c) => c.notNull())
          .addColumn('model', text, (c) => c.notNull())
          .addColumn('requests', big, (c) => c.notNull())
          .addColumn('cost', big, (c) => c.notNull())
          .addColumn('prompt_tokens', big, (c) => c.notNull())
          .addColumn('completion_tokens', big, (c) => c.notNull())
          .addPrimaryKeyConstraint('usage_daily_pk', ['account_id', 'day', 'model'])
          .execute();
      },
    },
    '0003_tenancy': {
      async up(db: Kysely<unknown>) {
        // Keys of one upstream organisation can be grouped; objects pinned to a key may then use any
        // key of its group.
        await db.schema.alterTable('upstream_keys').addColumn('key_group', text).execute();
        // Refused endpoint families an ancestor opened for this account (JSON array; null = none).
        await db.schema.alterTable('accounts').addColumn('allow_endpoints', text).execute();
        // Every upstream object created through the gateway: its owner, the key (and group) that
        // holds it, and, for work billed when done (batches, background responses), the reservation
        // held until the follower settles it.
        await db.schema
          .createTable('objects')
          .addColumn('id', text, (c) => c.primaryKey())
          .addColumn('kind', text, (c) => c.notNull())
          .addColumn('account_id', 'integer', (c) => c.notNull())
          .addColumn('key_id', 'integer', (c) => c.notNull())
          .addColumn('key_group', text)
          .addColumn('tag', text)
          .addColumn('created_at', big, (c) => c.notNull())
          .addColumn('deleted_at', big)
          .addColumn('follow', text)
          .addColumn('reserved', big, (c) => c.notNull().defaultTo(0))
          .addColumn('request_id', text)
          .addColumn('model', text)
          .addColumn('price_percent', 'integer')
          .execute();
        // Lists of one account's objects of one kind, newest or oldest first.
        await db.schema
          .createIndex('objects_owner')
          .on('objects')
          .columns(['account_id', 'kind', 'created_at'])
          .execute();
        await db.schema.createIndex('objects_follow').on('objects').column('follow').execute();
      },
    },
    '0004_instances': {
      async up(db: Kysely<unknown>) {
        // Gateway processes using this database, each refreshing its heartbeat while it runs
        // (see instances.ts). Only a server store (PostgreSQL) uses it; an embedded file has one
        // process by construction, and the table stays empty there.
        await db.schema
          .createTable('instances')
          .addColumn('id', text, (c) => c.primaryKey())
          .addColumn('host', text, (c) => c.notNull())
          .addColumn('pid', 'integer', (c) => c.notNull())
          .addColumn('started_at', big, (c) => c.notNull())
          .addColumn('heartbeat_at', big, (c) => c.notNull())
          .execute();
      },
    },
    '0005_credit_leases': {
      async up(db: Kysely<unknown>) {
        // Several instances on one database spend an account's credit from leases: slices of its
        // balance each instance holds and spends locally (cluster/lease-purse.ts). `leased` is the
        // sum of an account's leases, so spendable = live cards − leased. An embedded store has
        // one process and no leases; the column stays 0 there.
        await db.schema
          .alterTable('accounts')
          .addColumn('leased', big, (c) => c.notNull().defaultTo(0))
          .execute();
        await db.schema
          .createTable('leases')
          .addColumn('account_id', 'integer', (c) => c.notNull())
          .addColumn('instance_id', text, (c) => c.notNull())
          .addColumn('amount', big, (c) => c.notNull())
          .addColumn('updated_at', big, (c) => c.notNull())
          .addPrimaryKeyConstraint('leases_pk', ['account_id', 'instance_id'])
          .execute();
        await db.schema.createIndex('leases_instance').on('leases').column('instance_id').execute();
      },
    },
    '0006_follow_claims': {
      async up(db: Kysely<unknown>) {
        // Several instances: the one that follows each open batch or background response (its
        // instance id), so that exactly one polls and settles it; a survivor takes over the open
        // follows of an instance that died (tenancy/follower.ts, cluster/follow-claims.ts). Null on
        // one instance, which follows every open follow itself.
        await db.schema.alterTable('objects').addColumn('follow_owner', text).execute();
      },
    },
    '0007_instance_mode': {
      async up(db: Kysely<unknown>) {
        // Whether an instance runs alone (no Redis: its balances live in its memory) or shares the
        // store with others (leases): neither kind may start while the other kind is live.
        await db.schema
          .alterTable('instances')
          .addColumn('mode', text, (c) => c.notNull().defaultTo('sole'))
          .execute();
      },
    },
    '0008_request_log': {
      async up(db: Kysely<unknown>) {
        // The request log (GET /x-logs) reads usage_records: the columns it shows, and two indexes
        // for newest-first keyset pages, over everything (root) and per account. Both grow at their
        // right end (times increase), so they cost little on the write path.
        const add = async (name: string, type: ColumnDataType, dflt: number | null): Promise<void> => {
          await db.schema
            .alterTable('usage_records')
            .addColumn(name, type, (c) => (dflt === null ? c : c.notNull().defaultTo(dflt)))
            .execute();
        };
        await add('stream', 'integer', 0);
        await add('reasoning_tokens', big, 0);
        await add('images', 'integer', 0);
        await add('audio_ms', big, 0);
        await add('characters', big, 0);
        await add('rates', big, 1_000_000);
        await add('latency_ms', 'integer', null);
        await add('ttfb_ms', 'integer', null);
        await db.schema.alterTable('usage_records').addColumn('client_ip', text).execute();
        await db.schema.alterTable('usage_records').addColumn('error_code', text).execute();
        await db.schema
          .createIndex('usage_records_time')
          .on('usage_records')
          .columns(['created_at', 'request_id'])
          .execute();
        await db.schema
          .createIndex('usage_records_account_time')
          .on('usage_records')
          .columns(['account_id', 'created_at', 'request_id'])
          .execute();
      },
    },
    '0009_folded_names': {
      async up(db: Kysely<unknown>) {
        // The lookup keys of an account's Name and E-mail, `foldKey` of each (NFKC, case-folded in
        // every script), so that the store can find an account by either without the registry
        // holding every account in memory. The fold is Unicode's, which neither SQLite's lower()
        // (A–Z only) nor PostgreSQL's (locale-dependent, no NFKC) computes: the gateway writes the
        // keys with every account row (state-writer.ts accountRow), and this backfill computes
        // them here, in JS, with the very function the registry uses. (A change to foldKey would
        // need a migration that recomputes them.)
        for (const column of ['name_key', 'email_key']) {
          await db.schema
            .alterTable('accounts')
            .addColumn(column, text, (c) => c.notNull().defaultTo(''))
            .execute();
        }
        await backfillFoldedNames(db);
        // Built after the backfill (one sort instead of a million index updates). Plain indexes,
        // not UNIQUE, for the reason given at accounts_name in 0002.
        await db.schema.createIndex('accounts_name_key').on('accounts').column('name_key').execute();
        await db.schema.createIndex('accounts_email_key').on('accounts').column('email_key').execute();
      },
    },
    '0010_ledger_unindexed_by_account': {
      async up(db: Kysely<unknown>) {
        // Nothing reads the ledger by account on the request path or the API (the copy's check sums
        // it per band of accounts, one scan each), while every ledger row landed in the leaf of its
        // account's range: with thousands of busy sub-accounts each batch dirtied a page per row,
        // written to the WAL at commit and again at the checkpoint. Without the index the embedded
        // writer's cost per request with 2,000 busy accounts halves (BENCHMARKS.md, "Round two
        // (issue 15): many active accounts").
        await db.schema.dropIndex('ledger_account').execute();
      },
    },
  };
}

/** Accounts read and updated per round trip by the 0009 backfill. */
const FOLD_PAGE = 5_000;

type FoldedRow = readonly [id: number, nameKey: string, emailKey: string];

/**
 * One page of the 0009 backfill as ONE statement, which SQLite (3.33+) and PostgreSQL both run:
 * `with v(id, name_key, email_key) as (values …) update accounts … from v`. Its parameters are
 * each row's id and keys in order, then the page's first and last id, which bound the join so that
 * PostgreSQL reaches the rows through the primary key instead of scanning the table for each page.
 */
function foldedPage(rows: readonly FoldedRow[]) {
  // PostgreSQL types VALUES parameters as text unless told: the id is cast so that it compares
  // with accounts.id.
  const values = sql.join(rows.map(([id, n, e]) => sql`(cast(${id} as integer), ${n}, ${e})`));
  return sql`with v(id, name_key, email_key) as (values ${values})
    update accounts set name_key = v.name_key, email_key = v.email_key from v
    where accounts.id = v.id and accounts.id >= ${rows[0]?.[0]} and accounts.id <= ${rows.at(-1)?.[0]}`;
}

/**
 * Sets name_key and email_key of every account, FOLD_PAGE rows at a time in id order (keyset
 * pages: memory stays bounded whatever the number of accounts), one UPDATE per page: a statement
 * per row costs twice the time on SQLite (measured on 1,000,000 accounts) and a network round trip
 * per account on PostgreSQL. 3 × FOLD_PAGE parameters stay under both limits (32,766 and 65,535).
 * Every full page has the same SQL text, and Kysely takes almost as long to compile one (15,000
 * parameters) as SQLite takes to run it: it is compiled once, and run with each page's parameters
 * (in the order they appear in the text).
 */
async function backfillFoldedNames(db: Kysely<unknown>): Promise<void> {
  let compiled: { rows: number; query: CompiledQuery } | undefined;
  let after: number | undefined;
  for (;;) {
    // The first page has no lower bound (no id is assumed impossible).
    const from = after === undefined ? sql`` : sql`where id > ${after}`;
    const page = await sql<{ id: number; name: string; email: string }>`
      select id, name, email from accounts ${from} order by id limit ${FOLD_PAGE}`.execute(db);
    const rows: FoldedRow[] = page.rows.map((r) => [Number(r.id), foldKey(r.name), foldKey(r.email)]);
    const first = rows[0];
    const last = rows.at(-1);
    if (first === undefined || last === undefined) return;
    if (compiled?.rows !== rows.length) compiled = { rows: rows.length, query: foldedPage(rows).compile(db) };
    await db.executeQuery({ ...compiled.query, parameters: [...rows.flat(), first[0], last[0]] });
    if (rows.length < FOLD_PAGE) return;
    after = last[0];
  }
}

export function migrationProvider(caps: DialectCaps): MigrationProvider {
  return { getMigrations: () => Promise.resolve(migrations(caps)) };
}
