/**
 * One page of the request log, newest first, read by keyset (time, request id) so that page 1000
 * costs what page 1 does, on logs of tens of millions of rows.
 *
 * Two indexes serve it: (created_at, request_id) for everything, (account_id, created_at,
 * request_id) per account. How a page is read depends on whose rows are asked for:
 * - every account or one account, with no other filter: the index hands the page over directly;
 * - with filters (model, outcome, cost), or a big sub-account tree: the index is walked in steps
 *   (2,000 entries, then four times more each step, up to 16,000; an index-only OFFSET finds each
 *   step's lower end), the filters apply inside the step, and a call stops after 128,000 entries.
 *   A rare filter therefore costs bounded time per call: the page may come back with fewer rows
 *   than asked and a cursor to go on from (the end is when there is no cursor);
 * - a few accounts (a small tree): one seek per account on its own index, merged here.
 * Between steps the event loop gets a turn: an embedded store answers synchronously.
 */
import { sql, type ExpressionBuilder, type Kysely, type SelectQueryBuilder } from 'kysely';
import type { Database, UsageRecordsTable } from '../store/schema.js';
import type { LogFilter, LogKey } from './log-filter.js';

/** How far one call walks the index when the page is filtered (tests use small ones). */
export interface WalkLimits {
  /** Index entries of the first step; each next step walks four times more, up to `maxStep`. */
  readonly firstStep: number;
  readonly maxStep: number;
  /** Index entries one call walks at most. */
  readonly maxWalk: number;
}

// Each step is one synchronous read on an embedded store: 16,000 entries keep it to milliseconds.
const WALK: WalkLimits = { firstStep: 2_000, maxStep: 16_000, maxWalk: 128_000 };
/** Up to this many accounts, each is read on its own index and the results merged. */
const MERGE_ACCOUNTS = 64;
/** Up to this many accounts go into the SQL as a list; more are filtered here (bind limits). */
const LIST_ACCOUNTS = 2_000;

export type LogRow = UsageRecordsTable;

export interface LogPage {
  readonly rows: LogRow[];
  /** Where the next page starts; undefined at the end. */
  readonly next: LogKey | undefined;
}

type Q = SelectQueryBuilder<Database, 'usage_records', object>;
type Eb = ExpressionBuilder<Database, 'usage_records'>;

export async function readLogPage(
  db: Kysely<Database>,
  filter: LogFilter,
  size: number,
  after: LogKey | undefined,
  limits: WalkLimits = WALK,
): Promise<LogPage> {
  const accounts = filter.accounts;
  const many = accounts.kind === 'some' && accounts.ids.length > 1;
  if (many && accounts.ids.length <= MERGE_ACCOUNTS)
    return mergeAccounts(db, filter, accounts.ids, size, after);
  // Nothing to filter inside the range: the index hands the page over as it is.
  if (!many && filter.model === undefined && filter.outcomes === undefined && !(filter.minCost! > 0))
    return direct(db, filter, size, after);
  return walk(db, filter, size, after, limits);
}

async function direct(
  db: Kysely<Database>,
  filter: LogFilter,
  size: number,
  after: LogKey | undefined,
): Promise<LogPage> {
  let q = db
    .selectFrom('usage_records')
    .selectAll()
    .orderBy('created_at', 'desc')
    .orderBy('request_id', 'desc')
    .limit(size + 1);
  if (filter.accounts.kind === 'some') q = q.where('account_id', '=', filter.accounts.ids[0]!);
  q = below(q, after, filter.to);
  if (filter.from !== undefined) q = q.where('created_at', '>=', filter.from);
  const found = await q.execute();
  const rows = found.slice(0, size);
  return { rows, next: found.length > size ? keyOf(rows[rows.length - 1]) : undefined };
}

/** Σ rows matching the filter (a full count over the range: slower on big logs, asked for). */
export async function countLog(db: Kysely<Database>, filter: LogFilter): Promise<number> {
  const accounts = filter.accounts;
  // A big tree is counted in slices of LIST_ACCOUNTS (bind limits); the slices do not overlap.
  const slices =
    accounts.kind === 'all'
      ? [undefined]
      : Array.from({ length: Math.ceil(accounts.ids.length / LIST_ACCOUNTS) }, (_, i) =>
          accounts.ids.slice(i * LIST_ACCOUNTS, (i + 1) * LIST_ACCOUNTS),
        );
  let total = 0;
  for (const ids of slices) {
    let q = db.selectFrom('usage_records').select((eb) => eb.fn.countAll<number>().as('n'));
    if (ids !== undefined) q = q.where('account_id', 'in', ids);
    q = applyFilters(q, filter);
    if (filter.from !== undefined) q = q.where('created_at', '>=', filter.from);
    if (filter.to !== undefined) q = q.where('created_at', '<', filter.to);
    const row = await q.executeTakeFirst();
    total += Number(row?.n ?? 0);
  }
  return total;
}

async function mergeAccounts(
  db: Kysely<Database>,
  filter: LogFilter,
  ids: readonly number[],
  size: number,
  after: LogKey | undefined,
): Promise<LogPage> {
  const parts = await Promise.all(
    ids.map((id) => {
      let q = db
        .selectFrom('usage_records')
        .selectAll()
        .where('account_id', '=', id)
        .orderBy('created_at', 'desc')
        .orderBy('request_id', 'desc')
        .limit(size + 1);
      q = applyFilters(below(q, after, filter.to), filter);
      if (filter.from !== undefined) q = q.where('created_at', '>=', filter.from);
      return q.execute();
    }),
  );
  const all = parts.flat().sort(newestFirst);
  const rows = all.slice(0, size);
  return { rows, next: all.length > size ? keyOf(rows[rows.length - 1]) : undefined };
}

async function walk(
  db: Kysely<Database>,
  filter: LogFilter,
  size: number,
  after: LogKey | undefined,
  limits: WalkLimits,
): Promise<LogPage> {
  const accounts = filter.accounts;
  const single = accounts.kind === 'some' && accounts.ids.length === 1 ? accounts.ids[0] : undefined;
  const many = accounts.kind === 'some' && single === undefined ? new Set(accounts.ids) : undefined;
  const rows: LogRow[] = [];
  let upper = after;
  let stepRows = limits.firstStep;
  for (
    let walked = 0;
    walked < limits.maxWalk;
    walked += stepRows, stepRows = Math.min(limits.maxStep, stepRows * 4)
  ) {
    if (walked > 0) await new Promise((r) => setImmediate(r));
    // The step's lower end: the stepRows-th index entry below `upper` (undefined: fewer remain).
    let edgeQ = db
      .selectFrom('usage_records')
      .select(['created_at', 'request_id'])
      .orderBy('created_at', 'desc')
      .orderBy('request_id', 'desc')
      .limit(1)
      .offset(stepRows - 1);
    if (single !== undefined) edgeQ = edgeQ.where('account_id', '=', single);
    edgeQ = below(edgeQ, upper, filter.to);
    if (filter.from !== undefined) edgeQ = edgeQ.where('created_at', '>=', filter.from);
    const edgeRow = await edgeQ.executeTakeFirst();
    const edge = edgeRow === undefined ? undefined : keyOf(edgeRow);

    const want = size - rows.length;
    let q = db
      .selectFrom('usage_records')
      .selectAll()
      .orderBy('created_at', 'desc')
      .orderBy('request_id', 'desc')
      .limit(want + 1);
    if (single !== undefined) q = q.where('account_id', '=', single);
    else if (many !== undefined && many.size <= LIST_ACCOUNTS) q = q.where('account_id', 'in', [...many]);
    q = applyFilters(below(q, upper, filter.to), filter);
    if (edge !== undefined)
      q = q.where((eb) => eb(eb.refTuple('created_at', 'request_id'), '>=', tuple(eb, edge)));
    else if (filter.from !== undefined) q = q.where('created_at', '>=', filter.from);
    let found = await q.execute();
    if (many !== undefined && many.size > LIST_ACCOUNTS) found = found.filter((r) => many.has(r.account_id));
    if (found.length > want) {
      rows.push(...found.slice(0, want));
      return { rows, next: keyOf(rows[rows.length - 1]) };
    }
    rows.push(...found);
    if (edge === undefined) return { rows, next: undefined };
    upper = edge;
    // The edge row itself was in this step: the next starts strictly below it.
  }
  return { rows, next: upper };
}

/** Rows strictly below the cursor key, and below the range's end. */
function below<T extends Q>(q: T, after: LogKey | undefined, to: number | undefined): T {
  let out = q;
  if (after !== undefined)
    out = out.where((eb) => eb(eb.refTuple('created_at', 'request_id'), '<', tuple(eb, after))) as T;
  if (to !== undefined) out = out.where('created_at', '<', to) as T;
  return out;
}

/** The filters that do not choose an index: they apply inside whatever range is read. */
function applyFilters<T extends Q>(q: T, filter: LogFilter): T {
  let out = q;
  if (filter.model !== undefined) out = out.where('model', '=', filter.model) as T;
  if (filter.outcomes !== undefined) out = out.where('outcome', 'in', [...filter.outcomes]) as T;
  if (filter.minCost !== undefined && filter.minCost > 0) out = out.where('cost', '>=', filter.minCost) as T;
  return out;
}

function tuple(eb: Eb, key: LogKey) {
  return eb.tuple(sql.val(key.at), sql.val(key.id));
}

function keyOf(row: { created_at: number | string; request_id: string } | undefined): LogKey {
  // PostgreSQL returns bigint columns as strings.
  return { at: Number(row?.created_at ?? 0), id: row?.request_id ?? '' };
}

function newestFirst(a: LogRow, b: LogRow): number {
  const d = Number(b.created_at) - Number(a.created_at);
  if (d !== 0) return d;
  return a.request_id < b.request_id ? 1 : a.request_id > b.request_id ? -1 : 0;
}
