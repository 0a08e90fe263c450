/**
 * The sub-account page (/user/) in headless Chromium against the real gateway: create, recharge,
 * deduct, update, view (tree table) and delete sub-accounts through the form with the root key,
 * each checked against the API; the one-time key; the server's error messages; the upstream key
 * pool panel for root (add, disable, enable, delete) and its absence for other keys; no console
 * errors, accessible names, no horizontal overflow at phone width, and screenshots.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChild } from '../support/accounts.js';
import {
  chromiumAvailable,
  checkAccessibleNames,
  launchBrowser,
  newContext,
  openAllDetails,
  screenshots,
  watchPage,
  type DomElement,
  type NameReport,
  type PageProblems,
  POLL,
} from '../support/browser.js';
import { call, removeDir, ROOT_KEY, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const UPSTREAM_KEY = 'sk-upstream-pages-user-000001';
const ADDED_UPSTREAM_KEY = 'sk-upstream-pages-user-added-000002';
const CHILD = 'uichild';
const GRANDCHILD = 'uigrand';
const DAY_MS = 86_400_000;

type Json = Record<string, unknown>;

interface UserJson {
  ID: number;
  ParentID: number | null;
  Name: string;
  Email: string;
  Balance: number | null;
  CreditUsed: number;
  CreditGranted: number;
  CreditBalance: Array<{ amount: number; balance: number; expires_at: string }>;
  HardLimit: number;
  SoftLimit: number;
  RateLimit: number;
  Rates: number;
  Child: number;
  Requests: number;
  Status: boolean;
  AllowIPs: string[];
  AllowModels: string[];
}

interface UpstreamKeyJson {
  ID: number;
  Key: string;
  Status: string;
}

let mock: MockUpstream;
let gw: TestGateway;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let problems: PageProblems;
/** The key of the child created through the page, read from #new-key-value. */
let childKey = '';
const nameReports: NameReport[] = [];

async function api<T>(
  path: string,
  init: { method?: string; key?: string } = {},
): Promise<{ status: number; body: T }> {
  const r = await call(gw, path, init);
  return { status: r.status, body: (await r.json()) as T };
}

async function apiUser(name: string): Promise<UserJson> {
  // A single lookup answers a one-element array, as the original's does.
  const r = await api<[UserJson]>(`/x-dna/${name}`);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  expect(r.body).toHaveLength(1);
  return r.body[0];
}

async function apiKeys(): Promise<UpstreamKeyJson[]> {
  const r = await api<UpstreamKeyJson[]>('/x-keys');
  expect(r.status).toBe(200);
  return r.body;
}

async function apiErrorMessage(
  path: string,
  init: { method?: string; body?: Json; key?: string },
): Promise<string> {
  const r = await call(gw, path, init);
  expect(r.status).toBeGreaterThanOrEqual(400);
  const body = (await r.json()) as { error: { message: string } };
  return body.error.message;
}

/** Fills the form fields given by id (all others of `ids` are emptied). */
async function fillForm(values: Record<string, string>): Promise<void> {
  const fields = [
    'name-input',
    'email-input',
    'credit-input',
    'rates-input',
    'days-input',
    'rate-limit-input',
    'hard-limit-input',
    'soft-limit-input',
    'allow-models-input',
    'deny-models-input',
    'allow-ips-input',
    'deny-ips-input',
  ];
  for (const id of fields) await page.locator(`#${id}`).fill(values[id] ?? '');
}

/** Normalised text of the element(s), '' when there is none (does not wait for it to appear). */
async function text(selector: string): Promise<string> {
  const all = await page.locator(selector).allTextContents();
  return all.join(' ').replace(/\s+/g, ' ').trim();
}

/** The value cell of row `key` in the result's key/value table. */
function kvCell(key: string): Promise<string> {
  return text(`#user-table tr:has(> th:text-is("${key}")) > td`);
}

/** Parses "$1,234.56" into 1234.56. */
function money(shown: string): number {
  const m = /^\$(-?[\d,]+\.\d+)/.exec(shown.trim());
  expect(m, `"${shown}" is not a dollar amount`).not.toBeNull();
  return Number((m?.[1] ?? '').replaceAll(',', ''));
}

async function confirmDialog(expectMessage: RegExp, answer: 'ok' | 'cancel'): Promise<void> {
  const dialog = page.locator('#confirm-dialog');
  await expect.poll(() => dialog.isVisible(), POLL).toBe(true);
  expect(await dialog.getAttribute('open')).not.toBeNull();
  expect(await text('#confirm-message')).toMatch(expectMessage);
  nameReports.push(await checkAccessibleNames(page));
  await page.locator(answer === 'ok' ? '#confirm-ok-button' : '#confirm-cancel-button').click();
  await expect.poll(() => dialog.isVisible(), POLL).toBe(false);
}

async function waitForUpdate(verb: RegExp): Promise<void> {
  await expect.poll(() => text('#update-summary'), POLL).toMatch(verb);
  expect(await text('#error-message')).toBe('');
}

describe.skipIf(!chromiumAvailable)('sub-account page /user/ in Chromium', () => {
  beforeAll(async () => {
    [mock, browser] = await Promise.all([startMockUpstream(), launchBrowser()]);
    gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: UPSTREAM_KEY });
    context = await newContext(browser);
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: gw.url });
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

  it('shows the upstream key pool for the root key, one row per key of GET /x-keys', async () => {
    await page.goto(`${gw.url}/user/`);
    expect(await page.locator('#key-pool-panel').isVisible()).toBe(false);
    await page.locator('#parent-api-key-input').fill(ROOT_KEY);
    await page.locator('#parent-api-key-input').press('Enter');
    await expect.poll(() => page.locator('#key-pool-panel').isVisible(), POLL).toBe(true);
    expect(await text('#parent-key-status')).toMatch(/^Root key/);
    const keys = await apiKeys();
    expect(keys).toHaveLength(1);
    expect(await page.locator('#key-pool-body > tr').count()).toBe(keys.length);
    for (const k of keys) {
      const row = page.locator(`#key-row-${k.ID}`);
      expect(await row.getAttribute('data-status')).toBe(k.Status);
      expect(await row.locator('td').nth(1).textContent()).toBe(k.Key);
      // Masked: the upstream secret never reaches the page.
      expect(k.Key).not.toBe(UPSTREAM_KEY);
    }
    expect(await page.content()).not.toContain(UPSTREAM_KEY);
  });

  it('creates a sub-account through the form and shows its key once, with a copy button', async () => {
    await fillForm({ 'name-input': CHILD, 'email-input': `${CHILD}@example.com`, 'credit-input': '50' });
    await page.locator('#create-button').click();
    const keyField = page.locator('#new-key-value');
    await expect.poll(() => keyField.isVisible(), POLL).toBe(true);
    childKey = await keyField.inputValue();
    expect(childKey).toMatch(/^sk-Xvs\w{45}$/);
    expect(await page.locator('#copy-key-button').isVisible()).toBe(true);
    expect(await text('#new-key-warning')).toMatch(/shown only once/);
    expect(await text('#error-message')).toBe('');

    // Copy puts exactly the key on the clipboard.
    await page.locator('#copy-key-button').click();
    await expect.poll(() => text('#copy-key-status'), POLL).toBe('Copied 已复制');
    const clip = await page.evaluate(() =>
      (
        globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }
      ).navigator.clipboard.readText(),
    );
    expect(clip).toBe(childKey);

    // The API has the account with that credit, and the key works.
    const r = await api<[UserJson]>(`/x-users/${CHILD}`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject([
      {
        Name: CHILD,
        Email: `${CHILD}@example.com`,
        CreditGranted: 50,
        Balance: 50,
      },
    ]);
    const info = await api<{ name: string; balance: number }>('/dashboard/x_user/info', { key: childKey });
    expect(info.status).toBe(200);
    expect(info.body).toMatchObject({ name: CHILD, balance: 50 });

    nameReports.push(await checkAccessibleNames(page));
  });

  it('recharges with Days and deducts after confirmation; the API balance follows', async () => {
    await fillForm({ 'name-input': CHILD, 'credit-input': '10', 'days-input': '30' });
    await page.locator('#recharge-button').click();
    await waitForUpdate(/^Recharged 已充值: uichild/);
    let user = await apiUser(CHILD);
    expect(user.Balance).toBe(60);
    expect(user.CreditBalance).toHaveLength(2);
    const expiries = user.CreditBalance.map((c) => Date.parse(c.expires_at));
    expect(Math.abs(Math.min(...expiries) - (Date.now() + 30 * DAY_MS))).toBeLessThan(60_000);
    expect(money(await kvCell('Balance'))).toBe(60);

    await fillForm({ 'name-input': CHILD, 'credit-input': '-5' });
    await page.locator('#recharge-button').click();
    await confirmDialog(/^Deduct \$5\.00 from "uichild"/, 'ok');
    await waitForUpdate(/^Deducted 已扣减: uichild/);
    user = await apiUser(CHILD);
    expect(user.Balance).toBe(55);
    expect(money(await kvCell('Balance'))).toBe(55);
  });

  it('updates RPM, HardLimit, SoftLimit, allowed models and IPs; the API has them', async () => {
    await fillForm({
      'name-input': CHILD,
      'rate-limit-input': '77',
      'hard-limit-input': '40',
      'soft-limit-input': '20',
      'allow-models-input': ' gpt-4o-mini   gpt-4o ',
      'allow-ips-input': '127.0.0.1 10.0.0.0/8',
    });
    await page.locator('#update-button').click();
    await waitForUpdate(/^Updated 已更新: uichild/);
    const user = await apiUser(CHILD);
    expect(user).toMatchObject({ RateLimit: 77, HardLimit: 40, SoftLimit: 20 });
    expect([...user.AllowModels].sort()).toEqual(['gpt-4o', 'gpt-4o-mini']);
    expect([...user.AllowIPs].sort()).toEqual(['10.0.0.0/8', '127.0.0.1']);
    expect(money(await kvCell('HardLimit'))).toBe(40);
    expect(await kvCell('RateLimit')).toBe('77');
    expect((await kvCell('AllowModels')).split(' ').sort()).toEqual(['gpt-4o', 'gpt-4o-mini']);
    await fillForm({});
  });

  it('adds, disables, enables and deletes an upstream key; GET /x-keys follows each step', async () => {
    const before = await apiKeys();
    await page.locator('#upstream-key-input').fill(ADDED_UPSTREAM_KEY);
    await page.locator('#add-upstream-key-button').click();
    await expect.poll(() => text('#key-pool-status'), POLL).toMatch(/^Key added/);
    let keys = await apiKeys();
    expect(keys).toHaveLength(before.length + 1);
    const added = keys.find((k) => !before.some((b) => b.ID === k.ID));
    expect(added?.Status).toBe('active');
    const id = added?.ID ?? -1;
    const row = page.locator(`#key-row-${id}`);
    expect(await row.getAttribute('data-status')).toBe('active');
    expect(await page.locator('#upstream-key-input').inputValue()).toBe('');
    expect(await page.content()).not.toContain(ADDED_UPSTREAM_KEY);

    await page.locator(`#key-disable-${id}`).click();
    await expect.poll(() => row.getAttribute('data-status'), POLL).toBe('disabled');
    keys = await apiKeys();
    expect(keys.find((k) => k.ID === id)?.Status).toBe('disabled');
    expect(await page.locator(`#key-disable-${id}`).count()).toBe(0);

    await page.locator(`#key-enable-${id}`).click();
    await expect.poll(() => row.getAttribute('data-status'), POLL).toBe('active');
    keys = await apiKeys();
    expect(keys.find((k) => k.ID === id)?.Status).toBe('active');

    await page.locator(`#key-delete-${id}`).click();
    await confirmDialog(new RegExp(`^Delete upstream key .*\\(ID ${id}\\)`), 'ok');
    await expect.poll(() => row.count(), POLL).toBe(0);
    keys = await apiKeys();
    expect(keys.map((k) => k.ID)).toEqual(before.map((k) => k.ID));
    expect(await text('#key-pool-error')).toBe('');

    // Left disabled for the screenshot: one active and one disabled key.
    await page.locator('#upstream-key-input').fill(`${ADDED_UPSTREAM_KEY}-b`);
    await page.locator('#add-upstream-key-button').click();
    await expect.poll(() => page.locator('#key-pool-body > tr').count(), POLL).toBe(before.length + 1);
    const second = (await apiKeys()).find((k) => !before.some((b) => b.ID === k.ID));
    await page.locator(`#key-disable-${second?.ID ?? -1}`).click();
    await expect
      .poll(() => page.locator(`#key-row-${second?.ID ?? -1}`).getAttribute('data-status'))
      .toBe('disabled');
  });

  it('views one account and the whole tree as a table, indented by depth, with the API values', async () => {
    const grandKey = await createChild(gw, GRANDCHILD, 5, {}, childKey);
    expect(grandKey).toMatch(/^sk-Xvs/);
    const child = await apiUser(CHILD);
    const grand = await apiUser(GRANDCHILD);
    expect(grand.ParentID).toBe(child.ID);

    // One account.
    await fillForm({ 'name-input': GRANDCHILD });
    await page.locator('#view-button').click();
    await expect.poll(() => page.locator('#dna-body > tr').count(), POLL).toBe(1);
    expect(await page.locator(`#dna-row-${grand.ID}`).getAttribute('data-name')).toBe(GRANDCHILD);

    // Everyone below root.
    await fillForm({});
    await page.locator('#view-button').click();
    const all = (await api<UserJson[]>('/x-dna')).body;
    expect(all.map((u) => u.Name).sort()).toEqual([CHILD, GRANDCHILD]);
    await expect.poll(() => page.locator('#dna-body > tr').count(), POLL).toBe(all.length);
    expect(await page.locator(`#dna-row-${child.ID}`).getAttribute('data-depth')).toBe('0');
    expect(await page.locator(`#dna-row-${grand.ID}`).getAttribute('data-depth')).toBe('1');
    const order = await page
      .locator('#dna-body > tr')
      .evaluateAll((rows) => (rows as unknown as DomElement[]).map((r) => r.id));
    expect(order).toEqual([`dna-row-${child.ID}`, `dna-row-${grand.ID}`]);

    for (const u of all) {
      const cells = await page
        .locator(`#dna-row-${u.ID} > td`)
        .evaluateAll((tds) => (tds as unknown as DomElement[]).map((td) => (td.textContent ?? '').trim()));
      expect(cells[0]).toContain(u.Name);
      expect(cells[1]).toBe(String(u.ID));
      expect(cells[2]).toBe(u.Email);
      expect(money(cells[3] ?? '')).toBeCloseTo(u.Balance ?? NaN, 2);
      expect(money(cells[4] ?? '')).toBeCloseTo(u.CreditUsed, 2);
      expect(cells[6]).toBe(u.RateLimit.toLocaleString('en-US'));
      expect(cells[8]).toBe(String(u.Child));
      expect(cells[10]).toBe(u.Status ? 'Active 启用' : 'Disabled 停用');
    }
    // A table, not raw JSON, and no full key anywhere.
    const resultText = await text('#result');
    expect(resultText).not.toMatch(/[{}]|"ID"/);
    expect(await page.content()).not.toContain(childKey);
    expect(await page.content()).not.toContain(grandKey);

    const shots = await screenshots(page, 'user-tree-pool');
    expect(shots.phone.scrollWidth).toBeLessThanOrEqual(shots.phone.innerWidth + 1);

    await openAllDetails(page);
    nameReports.push(await checkAccessibleNames(page));
  });

  it("shows the server's error message: duplicate name, and delete of an account with children", async () => {
    const duplicate = await apiErrorMessage('/x-users', {
      body: { Name: CHILD, Email: 'someone-else@example.com', CreditGranted: 5 },
    });
    expect(duplicate).toContain('already taken');
    await fillForm({ 'name-input': CHILD, 'email-input': 'someone-else@example.com', 'credit-input': '5' });
    await page.locator('#create-button').click();
    await expect.poll(() => text('#error-message'), POLL).toContain(duplicate);
    expect(await text('#error-message')).toMatch(/\(HTTP 409\)$/);

    const conflict = await apiErrorMessage(`/x-users/${CHILD}`, { method: 'DELETE' });
    await fillForm({ 'name-input': CHILD });
    await page.locator('#delete-button').click();
    await confirmDialog(/^Delete "uichild"\?/, 'ok');
    await expect.poll(() => text('#error-message'), POLL).toContain(conflict);
    expect((await api(`/x-users/${CHILD}`)).status).toBe(200);
  });

  it('never shows the new key again after a reload', async () => {
    await page.reload();
    await expect.poll(() => page.locator('#key-pool-panel').isVisible(), POLL).toBe(true);
    expect(await page.locator('#new-key-value').count()).toBe(0);
    const html = await page.content();
    expect(html).not.toContain(childKey);
    expect(html).not.toContain(childKey.slice(6, 30));
    const values = await page
      .locator('input, textarea')
      .evaluateAll((els) => (els as unknown as Array<{ value: string }>).map((e) => e.value));
    expect(values.some((v) => v.includes(childKey))).toBe(false);
    const stored = await page.evaluate(() => {
      const ls = (
        globalThis as unknown as {
          localStorage: { length: number; key(i: number): string | null; getItem(k: string): string | null };
        }
      ).localStorage;
      return Array.from({ length: ls.length }, (_, i) => ls.getItem(ls.key(i) ?? '') ?? '');
    });
    expect(stored.some((v) => v.includes(childKey))).toBe(false);
  });

  it('deletes a sub-account after the confirmation dialog (Cancel keeps it); the API answers 404 then', async () => {
    const del = await call(gw, `/x-users/${GRANDCHILD}`, { method: 'DELETE', key: childKey });
    expect(del.status).toBe(200);

    await fillForm({ 'name-input': CHILD });
    await page.locator('#delete-button').click();
    await confirmDialog(/^Delete "uichild"\?/, 'cancel');
    await expect.poll(() => text('#action-status'), POLL).toBe('Cancelled. 已取消');
    expect((await api(`/x-users/${CHILD}`)).status).toBe(200);

    await page.locator('#delete-button').click();
    await confirmDialog(/^Delete "uichild"\?/, 'ok');
    await expect.poll(() => text('#delete-summary'), POLL).toMatch(/^Deleted 已删除: uichild/);
    expect(await text('#error-message')).toBe('');
    expect((await api(`/x-users/${CHILD}`)).status).toBe(404);
    expect((await api('/dashboard/x_user/info', { key: childKey })).status).toBe(401);
  });

  it('does not render the key pool for a non-root key', async () => {
    const otherKey = await createChild(gw, 'uiother', 25);
    await page.locator('#parent-api-key-input').fill(otherKey);
    await page.locator('#parent-api-key-input').press('Enter');
    await expect.poll(() => problems.expected4xx.some((l) => / 403 .*\/x-keys$/.test(l)), POLL).toBe(true);
    await expect.poll(() => page.locator('#key-pool-panel').isVisible(), POLL).toBe(false);
    expect(await page.locator('#key-pool-panel').getAttribute('hidden')).not.toBeNull();
    expect(await page.locator('[id^="key-row-"]').count()).toBe(0);
    expect(await text('#parent-key-status')).not.toMatch(/Root key/);

    // The non-root key still manages its own (empty) tree.
    await fillForm({});
    await page.locator('#view-button').click();
    await expect.poll(() => page.locator('#dna-empty').count(), POLL).toBe(1);

    // Remembered and probed again on load: still no panel.
    const probes = problems.expected4xx.length;
    await page.reload();
    expect(await page.locator('#parent-api-key-input').inputValue()).toBe(otherKey);
    await expect.poll(() => problems.expected4xx.length, POLL).toBeGreaterThan(probes);
    expect(await page.locator('#key-pool-panel').isVisible()).toBe(false);
    expect(await page.locator('[id^="key-row-"]').count()).toBe(0);
  });

  it('has an accessible name on every control and no console or page errors', () => {
    const missing = nameReports.flatMap((r) => r.missing);
    expect(missing).toEqual([]);
    expect(nameReports.reduce((n, r) => n + r.checked, 0)).toBeGreaterThan(40);
    expect(problems.errors).toEqual([]);
  });
});
