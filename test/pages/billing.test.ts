/**
 * The balance page (/billing/) in headless Chromium against the real gateway and the mock upstream:
 * every number of a key's row is compared with GET /dashboard/x_user/info for that key, the daily
 * spend chart with GET /v1/dashboard/billing/usage, a bad key shows the server's message, keys are
 * remembered across a reload, the Query button works from the keyboard, no console errors, every
 * control has an accessible name, no horizontal overflow at phone width, and screenshots.
 */
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChild, updateChild } from '../support/accounts.js';
import {
  chromiumAvailable,
  checkAccessibleNames,
  launchBrowser,
  newContext,
  openAllDetails,
  screenshots,
  watchPage,
  type DomElement,
  type PageProblems,
  POLL,
} from '../support/browser.js';
import { call, removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const UPSTREAM_KEY = 'sk-upstream-pages-billing-0001';
/** A well-formed key that no account has: the gateway answers 401. */
const BAD_KEY = 'sk-Xvs' + 'Nope'.repeat(11) + 'x';
/** 50 000 words of completion: $0.03 per gpt-4o-mini request, so the page shows non-zero cents. */
const ANSWER = 'word '.repeat(50_000);
const CHATS = 3;

interface UserInfo {
  id: number;
  level: number;
  child: number;
  name: string;
  alias: string;
  email: string;
  create_at: string;
  credit_balance: Array<{ amount: number; balance: number; granted_at: string; expires_at: string }>;
  credit_used: number;
  balance: number | null;
  daily_usage: { CreditUsed: number; Requests: number };
  monthly_usage: { CreditUsed: number; Requests: number };
  hard_limit: number | null;
  soft_limit: number | null;
  rate_limit: number;
}

interface Usage {
  daily_costs: Array<{ timestamp: number; line_items: Array<{ name: string; cost: number }> }>;
  total_usage: number;
}

/** What the page shows in one result row, read in one go. */
interface RowView {
  cells: Array<{ label: string; text: string; kv: Array<[string, string]> }>;
  account: string[];
  cards: string[][];
}

let mock: MockUpstream;
let gw: TestGateway;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let problems: PageProblems;
let alice: string;
let bob: string;

async function getJson<T>(path: string, key: string): Promise<T> {
  const r = await call(gw, path, { key });
  expect(r.status, path).toBe(200);
  return (await r.json()) as T;
}

function ymd(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** The usage query the page makes: this month up to tomorrow (UTC, like the browser context). */
function usagePath(): string {
  const now = new Date();
  const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const tomorrow = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
  return `/v1/dashboard/billing/usage?start_date=${ymd(start)}&end_date=${ymd(tomorrow)}`;
}

// ---------------------------------------------------------------------------------------------------
// Format-aware comparisons of what is shown with the API's numbers
// ---------------------------------------------------------------------------------------------------

/** "$1,234.56" / "$0.0012": the value within the shown precision, 2 decimals (4 below one cent). */
function expectMoney(shown: string | undefined, value: number | null, what: string): void {
  expect(value, `${what}: API value`).not.toBeNull();
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

/** "1,234" equals the integer exactly. */
function expectInt(shown: string | undefined, value: number, what: string): void {
  expect(shown, what).toMatch(/^-?[\d,]+$/);
  expect(Number((shown ?? '').replaceAll(',', '')), `${what}: "${shown}"`).toBe(value);
}

/** "12.3%" within the shown precision of part / whole, or "—" when whole is not positive. */
function expectPct(shown: string | undefined, part: number | null, whole: number | null, what: string): void {
  if (whole === null || whole <= 0 || part === null) {
    expect(shown, what).toBe('—');
    return;
  }
  const m = /^(\d+(?:\.\d+)?)%$/.exec(shown ?? '');
  expect(m, `${what}: "${shown}"`).not.toBeNull();
  expect(m?.[1], `${what}: one decimal`).toMatch(/^\d+\.\d$/);
  expect(Math.abs(Number(m?.[1]) - (part / whole) * 100), `${what}: "${shown}"`).toBeLessThanOrEqual(
    0.05 + 1e-9,
  );
}

/** ISO instant as the page shows it in the UTC browser context: date, or date and HH:MM. */
function shownDate(iso: string, withTime: boolean): string {
  return withTime ? `${iso.slice(0, 10)} ${iso.slice(11, 16)}` : iso.slice(0, 10);
}

async function readRow(row: Locator): Promise<RowView> {
  return row.evaluate((tr: DomElement) => {
    const text = (el: DomElement | null): string => (el?.textContent ?? '').replace(/\s+/g, ' ').trim();
    const cells = Array.from(tr.querySelectorAll(':scope > td')).map((td) => ({
      label: td.getAttribute('data-label') ?? '',
      text: text(td),
      kv: Array.from(td.querySelectorAll('.kv')).map(
        (kv) =>
          [text(kv.querySelector('.kv-label')), text(kv.querySelector('.kv-value'))] as [string, string],
      ),
    }));
    const accountCell = tr.querySelector('.account');
    const account = accountCell
      ? Array.from(accountCell.querySelectorAll(':scope > div')).map((d) => text(d))
      : [];
    const cards = Array.from(tr.querySelectorAll('.cards-table tbody tr')).map((r) =>
      Array.from(r.querySelectorAll('td')).map((td) => text(td)),
    );
    return { cells, account, cards };
  });
}

function kv(view: RowView, column: string, label: string): string | undefined {
  const cell = view.cells.find((c) => c.label === column);
  return cell?.kv.find(([l]) => l === label)?.[1];
}

/** Every number and text of row `index` against the API's info for `key`. */
async function expectRowMatchesApi(index: number, key: string): Promise<UserInfo> {
  const info = await getJson<UserInfo>('/dashboard/x_user/info', key);
  const row = page.locator(`#row-${index}`);
  await expect.poll(() => row.getAttribute('class'), POLL).toBe('info-row');
  const view = await readRow(row);
  expect(view.cells.map((c) => c.label)).toEqual([
    'API Key 密钥',
    'Account 账户',
    'Credit cards 额度卡',
    'Used / Balance 已用/余额',
    'Usage 用量',
    'Requests 请求',
    'RPM 速率',
  ]);
  // The key is masked: start and end only.
  expect(view.cells[0]?.text).toBe(`${key.slice(0, 8)}***${key.slice(-4)}`);

  // Account: "ID n · Level n · Children n", name, email, created.
  const [ids, name, email, created] = view.account;
  const idLine = /^ID (\d+) · Level (\d+) · Children ([\d,]+)$/.exec(ids ?? '');
  expect(idLine, `account line "${ids}"`).not.toBeNull();
  expect(Number(idLine?.[1])).toBe(info.id);
  expect(Number(idLine?.[2])).toBe(info.level);
  expectInt(idLine?.[3], info.child, 'children');
  expect(name).toBe(
    info.alias !== info.name && info.alias !== '' ? `${info.name} (${info.alias})` : info.name,
  );
  expect(email).toBe(info.email);
  expect(created).toBe(`Created 创建 ${shownDate(info.create_at, true)}`);

  // Credit cards: amount, balance, expiry date, one row per live card in the API's order.
  expect(view.cards).toHaveLength(info.credit_balance.length);
  info.credit_balance.forEach((card, i) => {
    const [amount, balance, expires] = view.cards[i] ?? [];
    expectMoney(amount, card.amount, `card ${i} amount`);
    expectMoney(balance, card.balance, `card ${i} balance`);
    expect(expires, `card ${i} expiry`).toBe(shownDate(card.expires_at, false));
  });

  const used = 'Used / Balance 已用/余额';
  expectMoney(kv(view, used, 'Used 已用'), info.credit_used, 'credit used');
  expectMoney(kv(view, used, 'Balance 余额'), info.balance, 'balance');

  const usage = 'Usage 用量';
  expectMoney(kv(view, usage, 'Today 今日'), info.daily_usage.CreditUsed, 'today usage');
  expectMoney(kv(view, usage, 'Month 本月'), info.monthly_usage.CreditUsed, 'month usage');
  expectMoney(kv(view, usage, 'HardLimit 月上限'), info.hard_limit, 'HardLimit');
  expectPct(
    kv(view, usage, 'Month / HardLimit'),
    info.monthly_usage.CreditUsed,
    info.hard_limit,
    'month / HardLimit',
  );

  const requests = 'Requests 请求';
  expectInt(kv(view, requests, 'Today 今日'), info.daily_usage.Requests, 'requests today');
  expectInt(kv(view, requests, 'Month 本月'), info.monthly_usage.Requests, 'requests this month');
  expectPct(
    kv(view, requests, 'Today / Month'),
    info.daily_usage.Requests,
    info.monthly_usage.Requests,
    'requests today / month',
  );

  expectInt(view.cells[6]?.text, info.rate_limit, 'RPM');
  return info;
}

/** The chart of row `index`: one bar per day with spend, and the total, as the usage API says. */
async function expectChartMatchesApi(index: number, key: string): Promise<number> {
  const usage = await getJson<Usage>(usagePath(), key);
  const spendDays = usage.daily_costs.filter((d) => d.line_items.reduce((s, li) => s + li.cost, 0) > 0);
  await expect.poll(() => page.locator(`#chart-${index} svg`).count(), POLL).toBe(1);
  expect(await page.locator(`#chart-${index} rect.bar`).count()).toBe(spendDays.length);
  expectMoney(
    (await page.locator(`#chart-total-${index}`).textContent()) ?? '',
    usage.total_usage / 100,
    'chart total',
  );
  if (spendDays.length === 0) {
    await expect.poll(() => page.locator(`#chart-${index} .empty-note`).count(), POLL).toBe(1);
  }
  return spendDays.length;
}

async function query(): Promise<void> {
  await page.locator('#query-button').click();
  await expect.poll(() => page.locator('#status').textContent(), POLL).toMatch(/^Done 完成/);
}

describe.skipIf(!chromiumAvailable)('balance page /billing/ in Chromium', () => {
  beforeAll(async () => {
    mock = await startMockUpstream({ stream: { content: ANSWER } });
    gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: UPSTREAM_KEY });
    [alice, bob, browser] = await Promise.all([
      createChild(gw, 'pagealice', 30),
      createChild(gw, 'pagebob', 12),
      launchBrowser(),
    ]);
    // A second, short-lived card (expiring within 30 days) and limits that the row shows.
    const r = await updateChild(gw, 'pagealice', { CreditGranted: 10, Days: 20 });
    expect(r.status).toBe(200);
    const limits = await updateChild(gw, 'pagealice', { HardLimit: 50, SoftLimit: 40, RateLimit: 120 });
    expect(limits.status).toBe(200);
    const client = gw.client(alice);
    for (let i = 0; i < CHATS; i++) {
      await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
      });
    }
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

  it('shows every number of each key exactly as GET /dashboard/x_user/info reports it', async () => {
    await page.goto(`${gw.url}/billing/`);
    await page
      .locator('#api-key-input')
      .fill(`Here are my keys: ${alice}, and (second) ${bob}; junk sk-nothing 12345\nold one: ${BAD_KEY}!`);
    await query();

    expect(await page.locator('#results > section').count()).toBe(3);
    const a = await expectRowMatchesApi(0, alice);
    const b = await expectRowMatchesApi(1, bob);

    // The numbers are non-trivial: alice spent money on CHATS requests and has two cards.
    expect(a.monthly_usage.Requests).toBe(CHATS);
    expect(a.credit_used).toBeGreaterThan(0.01);
    expect(a.credit_balance).toHaveLength(2);
    expect(a.hard_limit).toBe(50);
    expect(a.rate_limit).toBe(120);
    expect(b.credit_used).toBe(0);
    // The card expiring within 30 days is highlighted.
    expect(await page.locator('#row-0 .cards-table td.expiring').count()).toBe(1);
  });

  it('draws one bar per spending day and the month total from the usage API', async () => {
    expect(await expectChartMatchesApi(0, alice)).toBe(1);
    expect(await expectChartMatchesApi(1, bob)).toBe(0);
  });

  it("shows a bad key as an error row with the server's message", async () => {
    const r = await call(gw, '/dashboard/x_user/info', { key: BAD_KEY });
    expect(r.status).toBe(401);
    const { error } = (await r.json()) as { error: { message: string } };
    expect(error.message.length).toBeGreaterThan(0);
    const cell = page.locator('#error-2');
    await expect.poll(() => cell.textContent(), POLL).toContain(error.message);
    expect(await page.locator('#row-2').getAttribute('class')).toBe('error-row');
    expect(await page.locator('#status').textContent()).toMatch(/^Done 完成: 2 ok, 1 failed/);
    // The failing fetch of the bad key is Chromium's only console error, and it is an expected one.
    expect(problems.expected4xx.some((l) => l.includes(' 401 '))).toBe(true);
  });

  it('remembers the keys in localStorage and queries them again after a reload', async () => {
    const stored = await page.evaluate(() =>
      (globalThis as unknown as { localStorage: { getItem(k: string): string | null } }).localStorage.getItem(
        'api-key-input',
      ),
    );
    expect(stored).toBe([alice, bob, BAD_KEY].join('\n'));
    await page.reload();
    expect(await page.locator('#api-key-input').inputValue()).toBe([alice, bob, BAD_KEY].join('\n'));
    await expect
      .poll(() => page.locator('#status').textContent(), POLL)
      .toMatch(/^Done 完成: 2 ok, 1 failed/);
    await expectRowMatchesApi(0, alice);
    await expectRowMatchesApi(1, bob);
    expect(await page.locator('#error-2').count()).toBe(1);
  });

  it('has an accessible name on every control and no console or page errors', async () => {
    await openAllDetails(page);
    const report = await checkAccessibleNames(page);
    expect(report.missing).toEqual([]);
    expect(report.checked).toBeGreaterThanOrEqual(6);
    expect(problems.errors).toEqual([]);
  });

  it('takes screenshots at desktop and phone width without horizontal overflow', async () => {
    // Closed again: the screenshots show the page as a visitor sees it.
    await page.reload();
    await expect.poll(() => page.locator('#status').textContent(), POLL).toMatch(/^Done 完成/);
    const shots = await screenshots(page, 'billing-results');
    expect(shots.phone.scrollWidth).toBeLessThanOrEqual(shots.phone.innerWidth + 1);
    expect(problems.errors).toEqual([]);
  });

  it('reaches the Query button with Tab and activates it with Enter', async () => {
    await page.locator('#api-key-input').fill(`only ${bob}`);
    await page.locator('#api-key-input').blur();
    await page.evaluate(() =>
      (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0),
    );
    // Start from the top of the document and tab forward until the button has focus.
    await page.locator('body').click({ position: { x: 2, y: 2 } });
    const focused = (): Promise<string> =>
      page.evaluate(
        () =>
          (globalThis as unknown as { document: { activeElement: DomElement | null } }).document.activeElement
            ?.id ?? '',
      );
    let presses = 0;
    while ((await focused()) !== 'query-button' && presses < 25) {
      await page.keyboard.press('Tab');
      presses++;
    }
    expect(await focused()).toBe('query-button');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('#results > section').count(), POLL).toBe(1);
    await expect.poll(() => page.locator('#status').textContent(), POLL).toMatch(/^Done 完成: 1 ok/);
    await expectRowMatchesApi(0, bob);
    expect(problems.errors).toEqual([]);
  });
});
