/**
 * Names in any script on our own pages (issue 13), in headless Chromium against the real gateway:
 * the sub-account page creates, shows, views and updates `测试账号` (and shows the server's notice
 * when HardLimit alone lowers SoftLimit); the balance page shows the name for the child's key and
 * the root key as unlimited (the API's numbers for root are $1e9, which the page must not show as
 * a balance). No console or page errors.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  chromiumAvailable,
  launchBrowser,
  newContext,
  POLL,
  watchPage,
  type PageProblems,
} from '../support/browser.js';
import { call, removeDir, ROOT_KEY, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const NAME = '测试账号';
const EMAIL = 'ceshi@example.com';

let mock: MockUpstream;
let gw: TestGateway;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let problems: PageProblems;
let childKey = '';

/** Normalised text of the element(s), '' when there is none. */
async function text(selector: string): Promise<string> {
  const all = await page.locator(selector).allTextContents();
  return all.join(' ').replace(/\s+/g, ' ').trim();
}

async function fill(values: Record<string, string>): Promise<void> {
  for (const id of ['name-input', 'email-input', 'credit-input', 'rates-input', 'hard-limit-input']) {
    await page.locator(`#${id}`).fill(values[id] ?? '');
  }
}

describe.skipIf(!chromiumAvailable)('names in another script on the pages, in Chromium', () => {
  beforeAll(async () => {
    [mock, browser] = await Promise.all([startMockUpstream(), launchBrowser()]);
    gw = await startGateway({ OPENAI_API_BASE: mock.url });
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

  it('creates 测试账号 on the sub-account page and shows its name as typed', async () => {
    await page.goto(`${gw.url}/user/`);
    await page.locator('#parent-api-key-input').fill(ROOT_KEY);
    await page.locator('#parent-api-key-input').press('Enter');
    await fill({ 'name-input': NAME, 'email-input': EMAIL, 'credit-input': '25' });
    await page.locator('#create-button').click();
    await expect.poll(() => text('#create-summary'), POLL).toContain(`Created 已创建: ${NAME}`);
    // The page kept the name (its sanitiser drops punctuation and symbols, not letters).
    expect(await page.locator('#name-input').inputValue()).toBe(NAME);
    expect(await text('#user-table tr:has(> th:text-is("Name")) > td')).toBe(NAME);
    childKey = await page.locator('#new-key-value').inputValue();
    expect(childKey).toMatch(/^sk-Xvs\w{45}$/);
    const r = await call(gw, `/x-users/${encodeURIComponent(NAME)}`);
    expect(((await r.json()) as [{ Name: string }])[0].Name).toBe(NAME);
  });

  it('views 测试账号 by name in the tree table', async () => {
    await fill({ 'name-input': NAME });
    await page.locator('#view-button').click();
    await expect.poll(() => page.locator('#dna-body > tr').count(), POLL).toBe(1);
    const row = page.locator('#dna-body > tr').first();
    expect(await row.getAttribute('data-name')).toBe(NAME);
    expect(await row.locator('td').first().textContent()).toContain(NAME);
    expect(await row.locator('td').nth(2).textContent()).toBe(EMAIL);
  });

  it('lowers HardLimit alone and shows the notice that SoftLimit came down with it', async () => {
    await fill({ 'name-input': NAME, 'hard-limit-input': '50' });
    await page.locator('#update-button').click();
    await expect.poll(() => text('#update-summary'), POLL).toContain(NAME);
    expect(await text('#result-warnings')).toContain('SoftLimit lowered from $80 to $40');
    expect(await text('#user-table tr:has(> th:text-is("SoftLimit")) > td')).toBe('$40.00');
    expect(await text('#error-message')).toBe('');
  });

  it('shows the name on the balance page, and the root key as unlimited', async () => {
    await page.goto(`${gw.url}/billing/`);
    await page.locator('#api-key-input').fill(`${childKey}\n${ROOT_KEY}`);
    await page.locator('#query-button').click();
    await expect.poll(() => page.locator('#status').textContent(), POLL).toMatch(/^Done 完成: 2 ok/);
    expect(await text('#row-0 .account-name')).toBe(NAME);
    expect(await text('#row-1 .account-name')).toBe('root');
    const root = await text('#row-1');
    expect(root).toContain('Unlimited 无限');
    expect(root).toContain('None 无');
    expect(root).not.toContain('1,000,000,000');
    expect(root).not.toContain('1.00e+9');
    expect(await page.locator('#row-1 meter').count()).toBe(0);
    expect(await page.locator('#row-1 .badge').count()).toBe(0);
  });

  it('logs no console or page errors', () => {
    expect(problems.errors).toEqual([]);
  });
});
