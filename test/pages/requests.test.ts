/**
 * The balance page's Requests view and per-model chart split (issue 14), in headless Chromium against
 * the real gateway and the mock upstream. Real metered requests (two models, a sub-account and its
 * child, a sibling, refused requests); every number of every row shown is compared with GET /x-logs
 * for the same key and filters; filters (model, outcome, min cost, dates, account, sub-accounts) and
 * paging through Next / Previous give what the API gives; the CSV download is the API's CSV byte for
 * byte; a sibling's or a parent's requests never appear; the chart split by model shows the usage
 * API's line items. No console or page errors, accessible names, no overflow at phone width.
 */
import { readFileSync } from 'node:fs';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChild } from '../support/accounts.js';
import {
  ARTIFACTS_DIR,
  chromiumAvailable,
  checkAccessibleNames,
  DESKTOP,
  launchBrowser,
  newContext,
  openAllDetails,
  PHONE,
  screenshots,
  watchPage,
  type DomElement,
  type PageProblems,
  POLL,
} from '../support/browser.js';
import { call, removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const UPSTREAM_KEY = 'sk-upstream-pages-requests-0001';
/** 50 000 words of completion: whole cents per request, so the costs shown are not all $0.0000. */
const ANSWER = 'word '.repeat(50_000);
/** A model name that is HTML: it must show as text, never become an element. */
const HOSTILE_MODEL = '<img src=x onerror="window.__pwned=1">';
const CHILD_NAME = 'kid-子账号';

interface Row {
  request_id: string;
  created: number;
  created_at: string;
  account_id: number;
  account_name: string | null;
  endpoint: string;
  model: string;
  stream: boolean;
  prompt_tokens: number;
  cached_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  cost: number;
  cost_micros: number;
  rates: number;
  cost_at_caller_rates?: number;
  outcome: string;
  error_code: string | null;
  status: number;
  latency_ms: number | null;
  ttfb_ms: number | null;
}

interface Usage {
  daily_costs: Array<{ timestamp: number; line_items: Array<{ name: string; cost: number }> }>;
  total_usage: number;
}

/** One row of the Requests table as shown. */
interface Shown {
  id: string;
  cells: Record<string, string>;
  cost: string;
  costCaller: string | null;
  costTitle: string;
  badge: string;
  errorCode: string | null;
}

let mock: MockUpstream;
let gw: TestGateway;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let problems: PageProblems;
let alice: string;
let kid: string;
let bob: string;
const ids: Record<'alice' | 'kid' | 'bob', number> = { alice: 0, kid: 0, bob: 0 };

// ---------------------------------------------------------------------------------------------------
// The API side
// ---------------------------------------------------------------------------------------------------

async function apiLogs(key: string, query: string): Promise<{ rows: Row[]; headers: Headers }> {
  const r = await call(gw, `/x-logs?${query}`, { key });
  expect(r.status, `/x-logs?${query}`).toBe(200);
  return { rows: (await r.json()) as Row[], headers: r.headers };
}

async function getJson<T>(path: string, key: string): Promise<T> {
  const r = await call(gw, path, { key });
  expect(r.status, path).toBe(200);
  return (await r.json()) as T;
}

function chat(model: string, stream = false): Record<string, unknown> {
  return { model, stream, messages: [{ role: 'user', content: 'hi' }] };
}

async function metered(key: string, model: string, stream = false): Promise<number> {
  const r = await call(gw, '/v1/chat/completions', { key, body: chat(model, stream) });
  await r.text();
  return r.status;
}

function ymd(d: Date): string {
  return d.toISOString().slice(0, 10);
}

function dayIso(offsetDays: number): string {
  const now = new Date();
  return new Date(
    Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + offsetDays),
  ).toISOString();
}

function usagePath(): string {
  const now = new Date();
  const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const tomorrow = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
  return `/v1/dashboard/billing/usage?start_date=${ymd(start)}&end_date=${ymd(tomorrow)}`;
}

// ---------------------------------------------------------------------------------------------------
// Format-aware comparisons (the browser context runs in UTC and en-US)
// ---------------------------------------------------------------------------------------------------

/** "$1,234.56" / "$0.0012": the value within the shown precision, 2 decimals (4 below one cent). */
function expectMoney(shown: string | null | undefined, value: number | null | undefined, what: string): void {
  expect(value, `${what}: API value`).not.toBeNull();
  expect(value, `${what}: API value`).not.toBeUndefined();
  const m = /^\$(-?[\d,]+)\.(\d+)$/.exec(shown ?? '');
  expect(m, `${what}: "${shown}" is not a dollar amount`).not.toBeNull();
  const decimals = m?.[2]?.length ?? 0;
  const abs = Math.abs(value ?? 0);
  expect(decimals, `${what}: decimals of "${shown}"`).toBe(abs > 0 && abs < 0.01 ? 4 : 2);
  const parsed = Number(`${(m?.[1] ?? '').replaceAll(',', '')}.${m?.[2] ?? ''}`);
  expect(Math.abs(parsed - (value ?? 0)), `${what}: "${shown}" vs ${value}`).toBeLessThanOrEqual(
    0.5 * 10 ** -decimals + 1e-9,
  );
}

function expectInt(shown: string | undefined, value: number, what: string): void {
  expect(shown, what).toMatch(/^-?[\d,]+$/);
  expect(Number((shown ?? '').replaceAll(',', '')), `${what}: "${shown}"`).toBe(value);
}

function ms(v: number | null): string {
  return v === null ? '—' : `${v.toLocaleString('en-US')} ms`;
}

/** Every cell of `shown` against the API row. */
function expectRowMatches(shown: Shown, row: Row, what: string): void {
  expect(shown.id, what).toBe(row.request_id);
  const c = shown.cells;
  expect(c['time'], `${what} time`).toBe(new Date(row.created).toISOString().slice(0, 19).replace('T', ' '));
  expect(c['account'], `${what} account`).toBe(`${row.account_name ?? 'deleted 已删除'} #${row.account_id}`);
  expect(c['endpoint'], `${what} endpoint`).toBe(row.endpoint);
  expect(c['model'], `${what} model`).toBe(row.model === '' ? '—' : row.model);
  expect(c['stream'], `${what} stream`).toBe(row.stream ? 'Yes 是' : 'No 否');
  expectInt(c['prompt_tokens'], row.prompt_tokens, `${what} prompt tokens`);
  expectInt(c['cached_tokens'], row.cached_tokens, `${what} cached tokens`);
  expectInt(c['completion_tokens'], row.completion_tokens, `${what} completion tokens`);
  expectInt(c['reasoning_tokens'], row.reasoning_tokens, `${what} reasoning tokens`);
  expectMoney(shown.cost, row.cost, `${what} cost`);
  expect(shown.costTitle, `${what} exact cost`).toBe(
    `Exactly $${(row.cost_micros / 1e6).toFixed(6)} at Rates ${row.rates}`,
  );
  if (row.cost_at_caller_rates === undefined) expect(shown.costCaller, `${what} caller cost`).toBeNull();
  else {
    const m = /^yours 本账户 (\S+)$/.exec(shown.costCaller ?? '');
    expect(m, `${what} caller cost "${shown.costCaller}"`).not.toBeNull();
    expectMoney(m?.[1], row.cost_at_caller_rates, `${what} cost at caller's rates`);
  }
  expect(shown.badge, `${what} outcome`).toBe(row.outcome);
  expect(shown.errorCode, `${what} error code`).toBe(row.error_code);
  expect(c['status'], `${what} status`).toBe(String(row.status));
  expect(c['latency'], `${what} latency`).toBe(`${ms(row.latency_ms)} / ${ms(row.ttfb_ms)}`);
}

// ---------------------------------------------------------------------------------------------------
// The page side
// ---------------------------------------------------------------------------------------------------

async function shownRows(index: number): Promise<Shown[]> {
  return page.locator(`#req-rows-${index} > tr[data-request-id]`).evaluateAll((trs: DomElement[]) => {
    const text = (e: DomElement | null): string => (e?.textContent ?? '').replace(/\s+/g, ' ').trim();
    return trs.map((tr) => {
      const cells: Record<string, string> = {};
      for (const td of Array.from(tr.querySelectorAll(':scope > td'))) {
        cells[td.getAttribute('data-field') ?? ''] = text(td);
      }
      const costCell = tr.querySelector('td[data-field="cost"]');
      const caller = tr.querySelector('.req-cost-caller');
      const code = tr.querySelector('.req-error-code');
      return {
        id: tr.getAttribute('data-request-id') ?? '',
        cells,
        cost: text(tr.querySelector('.req-cost')),
        costCaller: caller === null ? null : text(caller),
        costTitle: costCell?.getAttribute('title') ?? '',
        badge: text(tr.querySelector('td[data-field="outcome"] .badge')),
        errorCode: code === null ? null : text(code),
      };
    });
  });
}

/** Waits until the view of key `index` has answered the query `query` (its data-query). */
async function waitForQuery(index: number, query: string): Promise<void> {
  await expect.poll(() => page.locator(`#req-table-${index}`).getAttribute('data-query'), POLL).toBe(query);
  await expect.poll(() => page.locator(`#requests-${index}`).getAttribute('aria-busy'), POLL).toBe('false');
}

/**
 * The page of key `index` shows what GET /x-logs?<query> answers for `key`: every row, the page
 * number, the row range and total (when counted), and Next / Previous enabled as the cursor chain says.
 */
async function expectViewMatchesApi(
  index: number,
  key: string,
  query: string,
  opts: { total?: number | null; prevEnabled?: boolean } = {},
): Promise<{ rows: Row[]; headers: Headers }> {
  await waitForQuery(index, query);
  const api = await apiLogs(key, query);
  const shown = await shownRows(index);
  expect(shown, `row count for ${query}`).toHaveLength(api.rows.length);
  api.rows.forEach((row, i) => expectRowMatches(shown[i] as Shown, row, `${query} row ${i}`));
  const pageNo = Number(api.headers.get('x-page'));
  const perPage = Number(api.headers.get('x-per-page'));
  expect(await page.locator(`#req-page-${index}`).getAttribute('data-page')).toBe(String(pageNo));
  const total = opts.total !== undefined ? opts.total : Number(api.headers.get('x-total-count'));
  const totalPages = total === null ? null : Math.ceil(total / perPage);
  expect(await page.locator(`#req-page-${index}`).textContent()).toBe(
    `Page 第 ${pageNo}${totalPages !== null && totalPages > 0 ? ` / ${totalPages}` : ''} 页`,
  );
  if (!query.includes('cursor=')) {
    expect(api.headers.get('x-total-pages')).toBe(String(totalPages));
  }
  const status = page.locator(`#req-status-${index}`);
  expect(await status.getAttribute('data-rows')).toBe(String(api.rows.length));
  const first = (pageNo - 1) * perPage + 1;
  expect(await status.textContent()).toBe(
    api.rows.length === 0
      ? 'No requests. 无请求'
      : `Rows 行 ${first}–${first + api.rows.length - 1}${total !== null ? ` of 共 ${total}` : ''}`,
  );
  if (api.rows.length === 0) expect(await page.locator(`#req-rows-${index} > tr.req-empty`).count()).toBe(1);
  expect(await page.locator(`#req-next-${index}`).isDisabled()).toBe(
    api.headers.get('x-next-cursor') === null,
  );
  expect(await page.locator(`#req-prev-${index}`).isDisabled()).toBe(!(opts.prevEnabled ?? false));
  return api;
}

async function queryKeys(...keys: string[]): Promise<void> {
  await page.locator('#api-key-input').fill(keys.join('\n'));
  await page.locator('#query-button').click();
  await expect.poll(() => page.locator('#status').textContent(), POLL).toMatch(/^Done 完成/);
}

async function openRequests(index: number): Promise<void> {
  await page.locator(`#requests-toggle-${index}`).click();
  await expect.poll(() => page.locator(`#requests-${index}`).getAttribute('open'), POLL).toBe('');
}

async function setFilters(
  index: number,
  f: {
    from?: string;
    to?: string;
    model?: string;
    outcome?: string;
    minCost?: string;
    account?: string;
    descendants?: boolean;
    size?: string;
  },
): Promise<void> {
  const at = (name: string) => page.locator(`#req-${name}-${index}`);
  await at('from').fill(f.from ?? '');
  await at('to').fill(f.to ?? '');
  await at('model').fill(f.model ?? '');
  await at('outcome').selectOption(f.outcome ?? '');
  await at('min-cost').fill(f.minCost ?? '');
  await at('account').fill(f.account ?? '');
  await at('descendants').setChecked(f.descendants ?? true);
  await at('size').fill(f.size ?? '50');
  await at('apply').click();
}

describe.skipIf(!chromiumAvailable)(
  'balance page /billing/: Requests view and chart split, in Chromium',
  () => {
    beforeAll(async () => {
      mock = await startMockUpstream({ stream: { content: ANSWER } });
      // CORS_ORIGINS: the last test runs the page against the API on another origin.
      gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: UPSTREAM_KEY, CORS_ORIGINS: '*' });
      browser = await launchBrowser();
      alice = await createChild(gw, 'reqalice', 50);
      bob = await createChild(gw, 'reqbob', 20);
      kid = await createChild(gw, CHILD_NAME, 10, { Rates: 2, Email: 'kid@example.com' }, alice);
      for (const [who, key] of [
        ['alice', alice],
        ['kid', kid],
        ['bob', bob],
      ] as const) {
        ids[who] = (await getJson<{ id: number }>('/dashboard/x_user/info', key)).id;
      }
      // alice: two models, one streamed; her child: gpt-4o-mini, then two refused (a model it may not
      // use, one of them named like HTML); bob (alice's sibling): his own.
      expect(await metered(alice, 'gpt-4o-mini')).toBe(200);
      expect(await metered(alice, 'gpt-4o', true)).toBe(200);
      expect(await metered(alice, 'gpt-4o-mini', true)).toBe(200);
      expect(await metered(kid, 'gpt-4o-mini')).toBe(200);
      expect(await metered(kid, 'gpt-4o-mini', true)).toBe(200);
      const acl = await call(gw, `/x-users/${encodeURIComponent(CHILD_NAME)}`, {
        method: 'PUT',
        key: alice,
        body: { AllowModels: ['gpt-4o-mini'] },
      });
      expect(acl.status).toBe(200);
      expect(await metered(kid, 'gpt-4o')).toBe(403);
      expect(await metered(kid, HOSTILE_MODEL)).toBe(403);
      expect(await metered(bob, 'gpt-4o-mini')).toBe(200);
      expect(await metered(bob, 'gpt-4o')).toBe(200);
      context = await newContext(browser);
      page = await context.newPage();
      problems = watchPage(page);
    });

    afterAll(async () => {
      await context?.close();
      await browser?.close();
      await gw?.stop();
      await mock?.close();
      if (gw !== undefined) removeDir(gw.dataDir);
    });

    it("lists the key's and its sub-accounts' requests exactly as GET /x-logs returns them", async () => {
      await page.goto(`${gw.url}/billing/`);
      await queryKeys(alice);
      await openRequests(0);
      const { rows } = await expectViewMatchesApi(0, alice, 'size=50&count=true');
      // alice's 3 and her child's 4 (2 completed, 2 refused); never bob's.
      expect(rows).toHaveLength(7);
      expect(new Set(rows.map((r) => r.account_id))).toEqual(new Set([ids.alice, ids.kid]));
      expect(
        rows.filter((r) => r.account_id === ids.kid && r.cost_at_caller_rates !== undefined),
      ).toHaveLength(4);
      expect(rows.filter((r) => r.outcome === 'refused')).toHaveLength(2);
      expect(rows.some((r) => r.stream)).toBe(true);
      expect(rows.some((r) => r.cost >= 0.01)).toBe(true);
      // The child's Unicode name and the HTML-like model name are text, not markup.
      const shown = await shownRows(0);
      expect(shown.some((s) => s.cells['account'] === `${CHILD_NAME} #${ids.kid}`)).toBe(true);
      expect(shown.some((s) => s.cells['model'] === HOSTILE_MODEL)).toBe(true);
      expect(await page.locator('#req-table-0 img').count()).toBe(0);
      expect(
        await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned),
      ).toBeUndefined();
      expect(problems.errors).toEqual([]);
    });

    it('filters by model, outcome, minimum cost, dates, account and sub-accounts like the API', async () => {
      await setFilters(0, { model: 'gpt-4o-mini' });
      const mini = await expectViewMatchesApi(0, alice, 'model=gpt-4o-mini&size=50&count=true');
      expect(mini.rows).toHaveLength(4);
      expect(mini.rows.every((r) => r.model === 'gpt-4o-mini')).toBe(true);

      await setFilters(0, { outcome: 'refused' });
      const refused = await expectViewMatchesApi(0, alice, 'outcome=refused&size=50&count=true');
      expect(refused.rows).toHaveLength(2);
      expect(refused.rows.every((r) => r.error_code === 'model_not_allowed' && r.status === 403)).toBe(true);
      expect((await shownRows(0)).map((s) => s.badge)).toEqual(['refused', 'refused']);

      // Between a gpt-4o-mini request and a gpt-4o one.
      await setFilters(0, { minCost: '0.1' });
      const dear = await expectViewMatchesApi(0, alice, 'min_cost=0.1&size=50&count=true');
      expect(dear.rows.map((r) => r.model)).toEqual(['gpt-4o']);

      await setFilters(0, { descendants: false });
      const own = await expectViewMatchesApi(0, alice, 'descendants=false&size=50&count=true');
      expect(own.rows.map((r) => r.account_id)).toEqual([ids.alice, ids.alice, ids.alice]);

      await setFilters(0, { account: CHILD_NAME, outcome: 'completed' });
      const kids = await expectViewMatchesApi(
        0,
        alice,
        `account=${encodeURIComponent(CHILD_NAME)}&outcome=completed&size=50&count=true`,
      );
      expect(kids.rows.map((r) => r.account_id)).toEqual([ids.kid, ids.kid]);

      // Dates are whole local (here UTC) days, "To" included: the page sends [from 00:00, day after to 00:00).
      const today = dayIso(0).slice(0, 10);
      const yesterday = dayIso(-1).slice(0, 10);
      await setFilters(0, { from: yesterday, to: today });
      const range = `from=${encodeURIComponent(dayIso(-1))}&to=${encodeURIComponent(dayIso(1))}&size=50&count=true`;
      expect((await expectViewMatchesApi(0, alice, range)).rows).toHaveLength(7);
      const tomorrow = dayIso(1).slice(0, 10);
      await setFilters(0, { from: tomorrow });
      const none = await expectViewMatchesApi(
        0,
        alice,
        `from=${encodeURIComponent(dayIso(1))}&size=50&count=true`,
      );
      expect(none.rows).toHaveLength(0);

      // A reversed range is refused on the page, without asking the API.
      const before = await page.locator('#req-table-0').getAttribute('data-query');
      await setFilters(0, { from: today, to: yesterday });
      await expect
        .poll(() => page.locator('#req-error-0').textContent(), POLL)
        .toMatch(/From must not be after To/);
      expect(await page.locator('#req-table-0').getAttribute('data-query')).toBe(before);

      // Reset: the defaults again (every request of alice and her child, 50 a page).
      await page.locator('#req-reset-0').click();
      await waitForQuery(0, 'size=50&count=true');
      expect(await page.locator('#req-descendants-0').isChecked()).toBe(true);
      expect(await page.locator('#req-error-0').textContent()).toBe('');
      expect(await shownRows(0)).toHaveLength(7);

      // An account that is not alice's: the server's message.
      await setFilters(0, { account: 'reqbob' });
      const r = await call(gw, '/x-logs?account=reqbob', { key: alice });
      expect(r.status).toBe(400);
      const { error } = (await r.json()) as { error: { message: string } };
      await expect.poll(() => page.locator('#req-error-0').textContent(), POLL).toContain(error.message);
      // Chromium logs the failing fetch as a console error: that one is expected.
      problems.errors.splice(
        0,
        problems.errors.length,
        ...problems.errors.filter((e) => !(e.includes('status of 400') && e.includes('/x-logs'))),
      );
      expect(problems.errors).toEqual([]);
    });

    it('pages through the cursor chain with Next and Previous, as the API numbers the pages', async () => {
      await setFilters(0, { size: '3' });
      // The API's own walk of the chain.
      const chain: string[] = ['size=3&count=true'];
      for (;;) {
        const { headers } = await apiLogs(alice, chain[chain.length - 1] as string);
        const next = headers.get('x-next-cursor');
        if (next === null) break;
        chain.push(`size=3&cursor=${encodeURIComponent(next)}`);
      }
      expect(chain).toHaveLength(3);
      const seen: string[] = [];
      for (const [i, query] of chain.entries()) {
        if (i > 0) await page.locator('#req-next-0').click();
        const { rows, headers } = await expectViewMatchesApi(0, alice, query, {
          total: 7,
          prevEnabled: i > 0,
        });
        expect(headers.get('x-page')).toBe(String(i + 1));
        seen.push(...rows.map((r) => r.request_id));
      }
      // Every request once, in the order of the unpaged list.
      const all = await apiLogs(alice, 'size=50');
      expect(seen).toEqual(all.rows.map((r) => r.request_id));
      for (let i = chain.length - 2; i >= 0; i--) {
        await page.locator('#req-prev-0').click();
        await expectViewMatchesApi(0, alice, chain[i] as string, { total: 7, prevEnabled: i > 0 });
      }
      expect(problems.errors).toEqual([]);
    });

    it('downloads the same CSV as GET /x-logs?format=csv for the same filters', async () => {
      for (const [filters, query] of [
        [{}, 'format=csv'],
        [{ model: 'gpt-4o-mini', descendants: false }, 'descendants=false&model=gpt-4o-mini&format=csv'],
      ] as const) {
        await setFilters(0, filters);
        const [download] = await Promise.all([
          page.waitForEvent('download'),
          page.locator('#req-csv-0').click(),
        ]);
        expect(download.suggestedFilename()).toMatch(/^requests-\d{4}-\d{2}-\d{2}\.csv$/);
        const saved = readFileSync(await download.path(), 'utf8');
        const r = await call(gw, `/x-logs?${query}`, { key: alice });
        expect(r.status).toBe(200);
        expect(r.headers.get('content-type')).toMatch(/^text\/csv/);
        const csv = await r.text();
        expect(saved).toBe(csv);
        const lines = csv.trimEnd().split('\n');
        expect(lines[0]).toMatch(/^created_at,request_id,account_id,/);
        expect(lines).toHaveLength(query.includes('model=') ? 3 : 8);
        await expect.poll(() => page.locator('#req-status-0').textContent(), POLL).toMatch(/^CSV saved/);
      }
      expect(problems.errors).toEqual([]);
    });

    it("never shows a sibling's or a parent's requests", async () => {
      await queryKeys(bob, kid);
      await openRequests(0);
      await openRequests(1);
      const b = await expectViewMatchesApi(0, bob, 'size=50&count=true');
      expect(b.rows).toHaveLength(2);
      expect(b.rows.every((r) => r.account_id === ids.bob)).toBe(true);
      const k = await expectViewMatchesApi(1, kid, 'size=50&count=true');
      expect(k.rows).toHaveLength(4);
      expect(k.rows.every((r) => r.account_id === ids.kid)).toBe(true);
      // The child's own key: its own rows carry no "at your rates" line.
      expect((await shownRows(1)).every((s) => s.costCaller === null)).toBe(true);
      const shownIds = [...(await shownRows(0)), ...(await shownRows(1))].map((s) => s.cells['account']);
      expect(shownIds.some((a) => a?.startsWith('reqalice'))).toBe(false);
      expect(problems.errors).toEqual([]);
    });

    it("splits the daily chart by model with the usage API's line items, in stable colours", async () => {
      await queryKeys(alice, kid);
      const usages = [await getJson<Usage>(usagePath(), alice), await getJson<Usage>(usagePath(), kid)];
      const fills = new Map<string, string>();
      for (const [index, usage] of usages.entries()) {
        const toggle = page.locator(`#chart-split-${index}`);
        await expect.poll(() => toggle.count(), POLL).toBe(1);
        if (!(await toggle.isChecked())) await toggle.check();
        await expect.poll(() => page.locator(`#chart-${index} svg.split`).count(), POLL).toBe(1);
        expect(await page.locator(`#chart-${index} rect.bar`).count()).toBe(0);

        // Per model: the month total in the legend; per day and model: one segment with the line item.
        const totals = new Map<string, number>();
        const segments: Array<{ day: string; model: string; cents: number }> = [];
        for (const day of usage.daily_costs) {
          for (const li of day.line_items) {
            totals.set(li.name, (totals.get(li.name) ?? 0) + li.cost);
            if (li.cost > 0) {
              segments.push({ day: ymd(new Date(day.timestamp * 1000)), model: li.name, cents: li.cost });
            }
          }
        }
        const legend = await page
          .locator(`#chart-legend-${index} > li[data-model]`)
          .evaluateAll((lis: DomElement[]) =>
            lis.map((li) => ({
              model: li.getAttribute('data-model') ?? '',
              cents: Number(li.getAttribute('data-cost-cents')),
              name: li.querySelector('.legend-name')?.textContent ?? '',
              cost: li.querySelector('.legend-cost')?.textContent ?? '',
              colour: li.querySelector('.swatch')?.getAttribute('style') ?? '',
            })),
          );
        expect(new Set(legend.map((l) => l.model))).toEqual(new Set([...totals.keys()]));
        // Largest spender first.
        expect(legend.map((l) => l.cents)).toEqual([...legend.map((l) => l.cents)].sort((a, b) => b - a));
        for (const l of legend) {
          expect(l.cents).toBeCloseTo(totals.get(l.model) ?? -1, 9);
          expect(l.name).toBe(l.model);
          expectMoney(l.cost, (totals.get(l.model) ?? 0) / 100, `legend ${l.model}`);
        }
        const sum = legend.reduce((s, l) => s + l.cents, 0);
        expect(sum).toBeCloseTo(usage.total_usage, 9);

        const shownSegs = await page.locator(`#chart-${index} rect.seg`).evaluateAll((rects: DomElement[]) =>
          rects.map((r) => ({
            day: r.getAttribute('data-day') ?? '',
            model: r.getAttribute('data-model') ?? '',
            cents: Number(r.getAttribute('data-cost-cents')),
            fill: r.getAttribute('fill') ?? '',
          })),
        );
        expect(
          shownSegs
            .map(({ day, model, cents }) => ({ day, model, cents }))
            .sort((a, b) => (a.day + a.model).localeCompare(b.day + b.model)),
        ).toEqual(segments.sort((a, b) => (a.day + a.model).localeCompare(b.day + b.model)));
        // One colour per model, the same in the legend, in every segment and in both charts.
        for (const s of shownSegs) {
          const known = fills.get(s.model);
          if (known === undefined) fills.set(s.model, s.fill);
          else expect(s.fill, `colour of ${s.model}`).toBe(known);
          expect(legend.find((l) => l.model === s.model)?.colour).toBe(`background:${s.fill}`);
        }
      }
      expect(fills.size).toBe(2);
      expect(new Set(fills.values()).size).toBe(2);

      // Off again: one plain bar per spending day, as before.
      await page.locator('#chart-split-0').uncheck();
      await expect.poll(() => page.locator('#chart-0 rect.seg').count(), POLL).toBe(0);
      const spendDays = usages[0]?.daily_costs.filter((d) => d.line_items.some((li) => li.cost > 0)).length;
      expect(await page.locator('#chart-0 rect.bar').count()).toBe(spendDays);
      expect(await page.locator('#chart-legend-0').isHidden()).toBe(true);
      expect(problems.errors).toEqual([]);
    });

    it('has an accessible name on every control, no errors, and no overflow at phone width', async () => {
      await page.locator('#chart-split-0').check();
      await openAllDetails(page);
      await waitForQuery(0, 'size=50&count=true');
      await waitForQuery(1, 'size=50&count=true');
      const report = await checkAccessibleNames(page);
      expect(report.missing).toEqual([]);
      expect(report.checked).toBeGreaterThanOrEqual(30);
      const shots = await screenshots(page, 'billing-requests');
      expect(shots.phone.scrollWidth).toBeLessThanOrEqual(shots.phone.innerWidth + 1);
      // The view and the split chart alone, at both widths.
      for (const [label, size] of [
        ['phone', PHONE],
        ['desktop', DESKTOP],
      ] as const) {
        await page.setViewportSize({ ...size });
        await page.waitForTimeout(300);
        await page
          .locator('#requests-0')
          .screenshot({ path: `${ARTIFACTS_DIR}billing-requests-view-${label}.png` });
        await page
          .locator('#chart-figure-0')
          .screenshot({ path: `${ARTIFACTS_DIR}billing-split-chart-${label}.png` });
      }
      expect(problems.errors).toEqual([]);
    });

    it('pages and downloads across origins too: the API lets the page read its paging headers', async () => {
      // Deployed alone (usage.example.com calling api.example.com) the page reads the answers through
      // CORS: here the page on 127.0.0.1 calls the same gateway as localhost.
      const apiBase = gw.url.replace('127.0.0.1', 'localhost');
      expect(apiBase).not.toBe(gw.url);
      try {
        await page.goto(`${gw.url}/billing/?api=${encodeURIComponent(apiBase)}`);
        await queryKeys(alice);
        await openRequests(0);
        await setFilters(0, { size: '3' });
        const first = await expectViewMatchesApi(0, alice, 'size=3&count=true');
        const next = first.headers.get('x-next-cursor') ?? '';
        await page.locator('#req-next-0').click();
        await expectViewMatchesApi(0, alice, `size=3&cursor=${encodeURIComponent(next)}`, {
          total: 7,
          prevEnabled: true,
        });
        expect(await page.locator('#req-error-0').textContent()).toBe('');
        const [download] = await Promise.all([
          page.waitForEvent('download'),
          page.locator('#req-csv-0').click(),
        ]);
        const csv = await (await call(gw, '/x-logs?format=csv', { key: alice })).text();
        expect(readFileSync(await download.path(), 'utf8')).toBe(csv);
        expect(problems.errors).toEqual([]);
      } finally {
        // Forget the remembered API address.
        await page.goto(`${gw.url}/billing/?api=`);
      }
    });
  },
);
