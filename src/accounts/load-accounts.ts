/**
 * Loading accounts from the store: the root at start-up, and some accounts as fresh objects (cards,
 * today's and this month's usage windows, the number of children): accounts loaded on first use,
 * the accounts one change of several instances locks, the money of accounts about to be shown.
 * Also the defaults of a first root account.
 */
import type { Kysely, Selectable } from 'kysely';
import { IpMatcher } from './ip-matcher.js';
import { freshState, type Account } from './account.js';
import type { AccountRegistry } from './account-registry.js';
import type { Card } from './cards.js';
import type { AccountsTable, CreditCardsTable, Database } from '../store/schema.js';
import type { Period } from '../billing/calendar.js';
import { RATE_ONE } from '../billing/money.js';

/**
 * What start-up loads: the root account (always in memory) and the highest id, so that new
 * accounts get fresh ids. Every other account is loaded on first use (account-loader.ts).
 */
export async function loadRoot(
  db: Kysely<Database>,
  registry: AccountRegistry,
  period: Period,
): Promise<void> {
  const max = await db
    .selectFrom('accounts')
    .select((eb) => eb.fn.max<number | null>('id').as('id'))
    .executeTakeFirst();
  registry.noteMaxId(Number(max?.id ?? 0));
  const root = await db
    .selectFrom('accounts')
    .select('id')
    .where('parent_id', 'is', null)
    .where('is_root', '=', 1)
    .orderBy('id')
    .executeTakeFirst();
  if (root === undefined) return;
  const a = (await loadSome(db, [root.id], period)).get(root.id);
  if (a !== undefined) {
    const { leased: _leased, ...account } = a;
    registry.add(account);
  }
}

/**
 * Some accounts as the store has them now (rows, cards, this day's and month's windows), built as
 * Account objects outside any registry: the accounts one change of several instances locks, or the
 * money of accounts about to be shown. Missing ids are absent from the map.
 */
export async function loadSome(
  db: Kysely<Database>,
  ids: readonly number[],
  period: Period,
): Promise<Map<number, Account & { leased: number }>> {
  const out = new Map<number, Account & { leased: number }>();
  if (ids.length === 0) return out;
  const rows = await db.selectFrom('accounts').selectAll().where('id', 'in', ids).execute();
  const cardRows = await db
    .selectFrom('credit_cards')
    .selectAll()
    .where('account_id', 'in', ids)
    .orderBy('id')
    .execute();
  const cards = cardsByAccount(cardRows);
  const windows = await loadWindows(db, period, ids);
  const children = await db
    .selectFrom('accounts')
    .select(['parent_id'])
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('parent_id', 'in', ids)
    .groupBy('parent_id')
    .execute();
  const counts = new Map(children.map((c) => [c.parent_id, Number(c.n)]));
  for (const r of rows) {
    const a = accountFromRow(r, cards.get(r.id) ?? [], windows.get(r.id), period);
    a.childCount = counts.get(r.id) ?? 0;
    out.set(r.id, Object.assign(a, { leased: Number(r.leased) }));
  }
  return out;
}

async function loadWindows(db: Kysely<Database>, period: Period, ids?: readonly number[]): Promise<Windows> {
  let q = db
    .selectFrom('usage_daily')
    .select(['account_id', 'day'])
    .select((eb) => [eb.fn.sum<number>('cost').as('cost'), eb.fn.sum<number>('requests').as('requests')])
    .where('day', '>=', `${period.month}-01`);
  if (ids !== undefined) q = q.where('account_id', 'in', ids);
  const usage = await q.groupBy(['account_id', 'day']).execute();
  const windows: Windows = new Map();
  for (const u of usage) {
    const w = windows.get(u.account_id) ?? {
      day: { period: period.day, cost: 0, requests: 0 },
      month: { period: period.month, cost: 0, requests: 0 },
    };
    w.month.cost += Number(u.cost);
    w.month.requests += Number(u.requests);
    if (u.day === period.day) {
      w.day.cost += Number(u.cost);
      w.day.requests += Number(u.requests);
    }
    windows.set(u.account_id, w);
  }
  return windows;
}

function cardsByAccount(cardRows: ReadonlyArray<Selectable<CreditCardsTable>>): Map<number, Card[]> {
  const cards = new Map<number, Card[]>();
  for (const c of cardRows) {
    const list = cards.get(c.account_id) ?? [];
    const card: Card = {
      amount: Number(c.amount),
      balance: Number(c.balance),
      grantedAt: Number(c.granted_at),
      expiresAt: Number(c.expires_at),
    };
    if (c.reference !== null) card.reference = c.reference;
    list.push(card);
    cards.set(c.account_id, list);
  }
  return cards;
}

type Windows = Map<number, { day: Account['day']; month: Account['month'] }>;

/** An Account as the store row has it (no reservation; its children are counted by `loadSome`). */
export function accountFromRow(
  r: Selectable<AccountsTable>,
  cards: Card[],
  w: { day: Account['day']; month: Account['month'] } | undefined,
  period: Period,
): Account {
  const allowIps = r.allow_ips === null ? null : (JSON.parse(r.allow_ips) as string[]);
  return {
    id: r.id,
    parentId: r.parent_id,
    isRoot: r.is_root === 1,
    createdAt: Number(r.created_at),
    name: r.name,
    email: r.email,
    alias: r.alias,
    billingEmail: r.billing_email,
    keyHash: r.key_hash,
    partialKey: r.partial_key,
    level: r.level,
    rates: Number(r.rates),
    rateLimit: Number(r.rate_limit),
    childLimit: Number(r.child_limit),
    hardLimit: Number(r.hard_limit),
    softLimit: Number(r.soft_limit),
    status: r.status === 1,
    allowIps,
    ipMatcher: allowIps === null ? null : new IpMatcher(allowIps),
    allowModels: r.allow_models === null ? null : new Set(JSON.parse(r.allow_models) as string[]),
    allowEndpoints: r.allow_endpoints === null ? null : new Set(JSON.parse(r.allow_endpoints) as string[]),
    creditGranted: Number(r.credit_granted),
    creditUsed: Number(r.credit_used),
    requests: Number(r.requests),
    cards,
    reserved: 0,
    day: w?.day ?? { period: period.day, cost: 0, requests: 0 },
    month: w?.month ?? { period: period.month, cost: 0, requests: 0 },
    softNoticeMonth: r.soft_notice_month,
    updatedAt: Number(r.updated_at),
    childCount: 0,
  };
}

/** Defaults of the root account; its balance is unlimited, so limits are effectively off. */
export function newRootAccount(
  id: number,
  email: string,
  keyHash: string,
  partialKey: string,
  now: number,
  period: Period,
): Account {
  return {
    id,
    parentId: null,
    isRoot: true,
    createdAt: now,
    name: 'root',
    email,
    alias: 'root',
    billingEmail: null,
    keyHash,
    partialKey,
    level: 0,
    rates: RATE_ONE,
    rateLimit: 6_666_666,
    childLimit: 88_888_888,
    hardLimit: 0,
    softLimit: 0,
    status: true,
    allowIps: null,
    ipMatcher: null,
    allowModels: null,
    allowEndpoints: null,
    creditGranted: 0,
    cards: [],
    updatedAt: now,
    ...freshState(period),
  };
}
