/**
 * Accounts not in memory (issue 15, point 4), end to end: a gateway that keeps at most 10
 * sub-accounts in memory serves 30 through its whole API — keys, the sub-account API, the
 * dashboards, the request log — with exact money, under concurrent spending that keeps evicting
 * and loading them, and again after a restart (which loads none).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChild } from '../support/accounts.js';
import { call, removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const N = 30;
const CACHE = 10;
let mock: MockUpstream;
let gw: TestGateway;
const keys = new Map<string, string>();
const names = Array.from({ length: N }, (_, i) => `cached-${String(i).padStart(2, '0')}`);

type Json = Record<string, unknown>;
const env = (): Record<string, string> => ({ OPENAI_API_BASE: mock.url, ACCOUNT_CACHE_SIZE: String(CACHE) });

beforeAll(async () => {
  mock = await startMockUpstream();
  gw = await startGateway({ ...env(), INIT_KEYS: 'sk-upstream-account-cache-0000001' });
  for (const name of names) keys.set(name, await createChild(gw, name, 5));
});

afterAll(async () => {
  await gw.stop();
  removeDir(gw.dataDir);
  await mock.close();
});

async function json(res: Promise<Response>): Promise<unknown> {
  const r = await res;
  const body: unknown = await r.json();
  expect(r.status, JSON.stringify(body)).toBe(200);
  return body;
}

async function spend(name: string): Promise<number> {
  const r = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keys.get(name)!}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `hello from ${name}` }],
    }),
  });
  await r.arrayBuffer();
  return r.status;
}

/** Per account: Σ ledger, Σ card balances and credit_used as stored (after a flush). */
async function stored(): Promise<
  Map<number, { ledger: number; cards: number; used: number; requests: number }>
> {
  await gw.app.writer.flush();
  const db = gw.app.store.db;
  const out = new Map<number, { ledger: number; cards: number; used: number; requests: number }>();
  for (const a of await db.selectFrom('accounts').select(['id', 'credit_used', 'requests']).execute())
    out.set(a.id, { ledger: 0, cards: 0, used: Number(a.credit_used), requests: Number(a.requests) });
  for (const l of await db.selectFrom('ledger').select(['account_id', 'amount']).execute())
    // (A deleted account keeps its ledger rows.)
    if (out.has(l.account_id)) out.get(l.account_id)!.ledger += Number(l.amount);
  for (const c of await db.selectFrom('credit_cards').select(['account_id', 'balance']).execute())
    if (out.has(c.account_id)) out.get(c.account_id)!.cards += Number(c.balance);
  return out;
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const m = new RegExp(`^${name}\\s+([0-9.e+]+)`, 'm').exec(text);
  return m === null ? Number.NaN : Number(m[1]);
}

describe('a gateway that holds 10 of 30 sub-accounts in memory', () => {
  it('evicts past its capacity and says so in /metrics', async () => {
    expect(gw.app.registry.size).toBeLessThanOrEqual(CACHE + 1);
    expect(await metric('proxyxai_accounts_in_memory')).toBe(gw.app.registry.size);
    expect(await metric('proxyxai_account_evictions_total')).toBeGreaterThan(0);
  });

  it('serves every key under concurrent spending, and the books are exact', async () => {
    const statuses = await Promise.all(
      Array.from({ length: 4 }, () => Promise.all(names.map((name) => spend(name)))).flat(),
    );
    expect(statuses.flat().filter((s) => s !== 200)).toEqual([]);
    const books = await stored();
    for (const name of names) {
      const id = ((await json(call(gw, `/x-users/${name}`))) as Json[])[0]!['ID'] as number;
      const b = books.get(id)!;
      expect(b.requests).toBe(4);
      expect(b.used).toBeGreaterThan(0);
      // Every micro-dollar spent is a ledger row: cards = Σ ledger, and granted − used = cards.
      expect(b.cards).toBe(b.ledger);
      expect(b.cards).toBe(5_000_000 - b.used);
    }
    expect(gw.app.registry.size).toBeLessThanOrEqual(CACHE + 1);
  });

  it('answers the sub-account API for accounts not in memory exactly as the store has them', async () => {
    const books = await stored();
    const list = (await json(call(gw, '/x-users?size=100'))) as Json[];
    expect(list.map((u) => u['Name'])).toEqual([...names].reverse());
    for (const u of list) {
      const b = books.get(u['ID'] as number)!;
      expect(u['CreditUsed']).toBe(b.used / 1e6);
      expect(u['Balance']).toBe(b.cards / 1e6);
      expect(u['Requests']).toBe(4);
    }
    const dna = (await json(call(gw, '/x-dna'))) as Json[];
    expect(dna).toHaveLength(N);
    // By id, name in another case, and e-mail.
    const target = list[7]!;
    for (const ident of [
      String(target['ID']),
      String(target['Name']).toUpperCase(),
      String(target['Email']),
    ]) {
      const one = (await json(call(gw, `/x-users/${encodeURIComponent(ident)}`))) as Json[];
      expect(one[0]!['ID']).toBe(target['ID']);
    }
    // A name taken by an account not in memory is still taken.
    const dup = await call(gw, '/x-users', {
      body: { Name: String(list[3]!['Name']).toUpperCase(), Email: 'new@example.com', CreditGranted: 5 },
    });
    expect(dup.status).toBe(409);
    // Changes and deletions of accounts not in memory.
    const put = await call(gw, `/x-users/${names[0]!}`, { method: 'PUT', body: { Alias: 'renamed-alias' } });
    expect(put.status).toBe(200);
    expect(((await json(call(gw, `/x-users/${names[0]!}`))) as Json[])[0]!['Alias']).toBe('renamed-alias');
    const del = await call(gw, `/x-users/${names[1]!}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(await spend(names[1]!)).toBe(401);
  });

  it('answers the dashboards and the request log of accounts not in memory', async () => {
    const books = await stored();
    for (const name of names.slice(2)) {
      const info = (await json(call(gw, '/dashboard/x_user/info', { key: keys.get(name)! }))) as Json;
      expect(info['name']).toBe(name);
      const b = books.get(info['id'] as number)!;
      expect(info['credit_used']).toBe(b.used / 1e6);
      expect(info['balance']).toBe(b.cards / 1e6);
      expect(info['monthly_usage']).toEqual({ CreditUsed: b.used / 1e6, Requests: 4 });
    }
    const log = (await json(call(gw, '/x-logs?size=1000'))) as Json[];
    const named = new Set(log.map((r) => r['account_name']));
    for (const name of names.slice(2)) expect(named.has(name)).toBe(true);
  });

  it('looks a wrong key up in the store once, then remembers it', async () => {
    const wrong = `sk-Xvs${'w'.repeat(45)}`;
    const first = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${wrong}` } });
    expect(first.status).toBe(401);
    const reads = await metric('proxyxai_account_store_reads_total');
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${wrong}` } });
      expect(r.status).toBe(401);
    }
    expect(await metric('proxyxai_account_store_reads_total')).toBe(reads);
  });

  it('after a restart holds only the root, and everything above still holds', async () => {
    const before = await stored();
    gw = await gw.restart(env());
    expect(gw.app.registry.size).toBe(1);
    expect(await stored()).toEqual(before);
    const statuses = await Promise.all(names.slice(2).map((name) => spend(name)));
    expect(statuses.every((s) => s === 200)).toBe(true);
    const after = await stored();
    for (const b of after.values()) expect(b.cards).toBe(b.ledger);
    for (const name of names.slice(2)) {
      const id = ((await json(call(gw, `/x-users/${name}`))) as Json[])[0]!['ID'] as number;
      expect(after.get(id)!.requests).toBe(before.get(id)!.requests + 1);
    }
  });
});
