// The request log's reads on every store backend: following the cursor from page to page yields
// exactly the rows a plain filter over the whole table yields, newest first, each once — on
// every path (direct, walked in bounded steps with partial pages, merged per account).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_LOG_DETAIL, type UsageRow } from '../../src/store/batch-sink.js';
import type { LogFilter, LogKey } from '../../src/logs/log-filter.js';
import { countLog, readLogPage, type LogRow, type WalkLimits } from '../../src/logs/log-page.js';
import { storeBackends, type OpenedStore } from '../support/stores.js';

const ROWS = 3_000;
const MODELS = ['gpt-4o-mini', 'gpt-4o', 'o4-mini'];
const OUTCOMES = ['completed', 'completed', 'completed', 'refused', 'client-gone'];

function rows(): UsageRow[] {
  const out: UsageRow[] = [];
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let i = 0; i < ROWS; i++) {
    // Several rows share a millisecond, so the request id breaks ties.
    const at = 1_700_000_000_000 + Math.floor(i / 3) * 1000;
    out.push({
      request_id: `req_${String(rand(1_000_000)).padStart(7, '0')}_${i}`,
      account_id: 1 + rand(10),
      model: MODELS[rand(3)]!,
      path: '/v1/chat/completions',
      day: '2023-11-14',
      prompt_tokens: rand(100),
      cached_tokens: 0,
      completion_tokens: rand(100),
      cost: rand(1000),
      status: 200,
      outcome: i % 997 === 0 ? 'cancelled' : OUTCOMES[rand(5)]!,
      attempts: 1,
      usage_source: 'upstream',
      created_at: at,
      ...NO_LOG_DETAIL,
    });
  }
  return out;
}

const ALL: LogFilter = {
  accounts: { kind: 'all' },
  from: undefined,
  to: undefined,
  model: undefined,
  outcomes: undefined,
  minCost: undefined,
};

function matches(f: LogFilter, r: UsageRow): boolean {
  if (f.accounts.kind === 'some' && !f.accounts.ids.includes(r.account_id)) return false;
  if (f.from !== undefined && r.created_at < f.from) return false;
  if (f.to !== undefined && r.created_at >= f.to) return false;
  if (f.model !== undefined && r.model !== f.model) return false;
  if (f.outcomes !== undefined && !f.outcomes.includes(r.outcome)) return false;
  if (f.minCost !== undefined && r.cost < f.minCost) return false;
  return true;
}

function newestFirst(a: { created_at: number; request_id: string }, b: typeof a): number {
  return (
    b.created_at - a.created_at || (a.request_id < b.request_id ? 1 : a.request_id > b.request_id ? -1 : 0)
  );
}

const SMALL: WalkLimits = { firstStep: 10, maxStep: 40, maxWalk: 120 };

const CASES: Array<[string, LogFilter]> = [
  ['everything (direct)', ALL],
  ['one account (direct)', { ...ALL, accounts: { kind: 'some', ids: [3] } }],
  ['a time range', { ...ALL, from: 1_700_000_100_000, to: 1_700_000_500_000 }],
  ['a model (walked)', { ...ALL, model: 'o4-mini' }],
  ['refused or gone, min cost (walked)', { ...ALL, outcomes: ['refused', 'client-gone'], minCost: 500 }],
  ['a rare outcome: partial pages (walked)', { ...ALL, outcomes: ['cancelled'] }],
  ['one account and a model (walked)', { ...ALL, accounts: { kind: 'some', ids: [4] }, model: 'gpt-4o' }],
  ['three accounts (merged)', { ...ALL, accounts: { kind: 'some', ids: [1, 5, 9] } }],
  [
    'three accounts, outcome (merged)',
    { ...ALL, accounts: { kind: 'some', ids: [2, 6, 7] }, outcomes: ['refused'] },
  ],
  [
    'seventy accounts, a range (walked with a list)',
    {
      ...ALL,
      accounts: { kind: 'some', ids: Array.from({ length: 70 }, (_, i) => (i % 2 === 0 ? i + 1 : 1000 + i)) },
      from: 1_700_000_200_000,
    },
  ],
];

describe.each(storeBackends())('$name store', (backend) => {
  let opened: OpenedStore;
  const data = rows();
  beforeAll(async () => {
    opened = await backend.open();
    for (let i = 0; i < data.length; i += 200)
      await opened.store.db
        .insertInto('usage_records')
        .values(data.slice(i, i + 200))
        .execute();
  });
  afterAll(async () => {
    await opened.dispose();
  });

  it.each(CASES)('%s: the pages are the filtered rows, newest first, each once', async (_name, filter) => {
    const want = data.filter((r) => matches(filter, r)).sort(newestFirst);
    for (const [size, limits] of [
      [37, SMALL],
      [100, undefined],
    ] as const) {
      const got: LogRow[] = [];
      let after: LogKey | undefined;
      let calls = 0;
      for (;;) {
        const page = await readLogPage(opened.store.db, filter, size, after, limits);
        calls++;
        expect(page.rows.length).toBeLessThanOrEqual(size);
        got.push(...page.rows);
        if (page.next === undefined) break;
        after = page.next;
        expect(calls).toBeLessThan(1000);
      }
      expect(got.map((r) => r.request_id)).toEqual(want.map((r) => r.request_id));
    }
    expect(await countLog(opened.store.db, filter)).toBe(want.length);
  });

  it('a rare filter comes back in bounded calls, with partial pages and a cursor to go on', async () => {
    const page = await readLogPage(
      opened.store.db,
      { ...ALL, outcomes: ['cancelled'] },
      100,
      undefined,
      SMALL,
    );
    // 120 index entries per call hold at most one of the 4 cancelled rows (one in 997).
    expect(page.rows.length).toBeLessThanOrEqual(1);
    expect(page.next).toBeDefined();
  });
});
