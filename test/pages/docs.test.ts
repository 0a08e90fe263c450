/**
 * The docs site (/docs/, and / which redirects there) in headless Chromium: every page reachable
 * from it is crawled; no internal link is broken (each same-origin link answers 200, each #anchor
 * exists on its target page); the footer signature is on every page (billing, user and each docs
 * page); no console or page errors; accessible names; no horizontal overflow at phone width; and
 * screenshots of the index and the API reference.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  chromiumAvailable,
  checkAccessibleNames,
  launchBrowser,
  newContext,
  pageWidths,
  PHONE,
  screenshots,
  watchPage,
  DESKTOP,
  type DomAnchor,
  type DomElement,
  type PageProblems,
} from '../support/browser.js';
import { removeDir, startGateway, type TestGateway } from '../support/gateway.js';
import { startMockUpstream, type MockUpstream } from '../support/mock-upstream.js';

const FOOTER_TEXT = 'proxyxai.com provides basic support';
const FOOTER_HREF = 'https://proxyxai.com';

interface Link {
  /** The href attribute as written. */
  raw: string;
  /** The resolved URL. */
  href: string;
}

interface Crawled {
  url: string;
  status: number;
  ids: Set<string>;
  links: Link[];
  /** Same-origin stylesheets, scripts and images of the page. */
  assets: string[];
  footer: { count: number; text: string; href: string | null };
  names: { missing: string[]; checked: number };
}

let mock: MockUpstream;
let gw: TestGateway;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let problems: PageProblems;
/** Crawled pages by URL without fragment. */
const pages = new Map<string, Crawled>();

function withoutHash(url: string): string {
  const u = new URL(url);
  u.hash = '';
  return u.href;
}

function isInternal(url: string): boolean {
  const u = new URL(url);
  return u.origin === new URL(gw.url).origin && (u.protocol === 'http:' || u.protocol === 'https:');
}

/** Pages worth loading in the browser (HTML, by path), as opposed to assets. */
function isHtmlPage(url: string): boolean {
  const path = new URL(url).pathname;
  return path.endsWith('/') || path.endsWith('.html');
}

async function visit(url: string): Promise<Crawled> {
  const response = await page.goto(url);
  const status = response?.status() ?? 0;
  const data = await page.evaluate(() => {
    const doc = (globalThis as unknown as { document: DomElement }).document;
    const all = <T extends DomElement>(selector: string): T[] =>
      Array.from(doc.querySelectorAll(selector)) as T[];
    const footer = all<DomAnchor>('#footer-link');
    return {
      ids: all('[id], a[name]').map((el) => el.id || (el.getAttribute('name') ?? '')),
      links: all<DomAnchor>('a[href]').map((a) => ({ raw: a.getAttribute('href') ?? '', href: a.href })),
      assets: [
        ...all<DomAnchor>('link[href]').map((l) => l.href),
        ...all<DomElement & { src: string }>('script[src], img[src]').map((s) => s.src),
      ],
      footer: {
        count: footer.length,
        text: footer[0]?.textContent ?? '',
        href: footer[0]?.getAttribute('href') ?? null,
      },
    };
  });
  const names = await checkAccessibleNames(page);
  return {
    url: page.url(),
    status,
    ids: new Set(data.ids),
    links: data.links,
    assets: data.assets.filter(isInternal),
    footer: data.footer,
    names,
  };
}

describe.skipIf(!chromiumAvailable)('docs site /docs/ in Chromium', () => {
  beforeAll(async () => {
    [mock, browser] = await Promise.all([startMockUpstream(), launchBrowser()]);
    gw = await startGateway({ OPENAI_API_BASE: mock.url, INIT_KEYS: 'sk-upstream-pages-docs-000001' });
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

  it('redirects / to /docs/', async () => {
    const response = await page.goto(`${gw.url}/`);
    expect(response?.status()).toBe(200);
    expect(page.url()).toBe(`${gw.url}/docs/`);
    expect(response?.request().redirectedFrom()?.url()).toBe(`${gw.url}/`);
    expect(await page.title()).toMatch(/ProxyXAI docs/);
  });

  it('crawls every page reachable from /docs/ without a broken internal link or anchor', async () => {
    const queue = [`${gw.url}/docs/`];
    while (queue.length > 0) {
      const url = queue.shift() ?? '';
      if (pages.has(url)) continue;
      const crawled = await visit(url);
      pages.set(url, crawled);
      for (const link of crawled.links) {
        if (!isInternal(link.href)) continue;
        const target = withoutHash(link.href);
        if (isHtmlPage(target) && !pages.has(target) && !queue.includes(target)) queue.push(target);
      }
    }
    const paths = [...pages.keys()].map((u) => new URL(u).pathname).sort();
    // The ten docs pages (index both as / and index.html) and the two other sites.
    expect(paths).toEqual(
      expect.arrayContaining([
        '/billing/',
        '/docs/',
        '/docs/accounts.html',
        '/docs/api.html',
        '/docs/cascading.html',
        '/docs/configuration.html',
        '/docs/deployment.html',
        '/docs/endpoints.html',
        '/docs/faq.html',
        '/docs/index.html',
        '/docs/quick-start.html',
        '/docs/sdk.html',
        '/user/',
      ]),
    );

    const broken: string[] = [];
    const statusOf = new Map<string, number>();
    const targets = new Set<string>();
    for (const p of pages.values()) {
      if (p.status !== 200) broken.push(`${p.url}: page answered ${p.status}`);
      for (const link of p.links) if (isInternal(link.href)) targets.add(withoutHash(link.href));
      for (const asset of p.assets) targets.add(withoutHash(asset));
    }
    await Promise.all(
      [...targets].map(async (t) => {
        const r = await fetch(t);
        await r.arrayBuffer();
        statusOf.set(t, r.status);
      }),
    );
    let anchors = 0;
    for (const p of pages.values()) {
      for (const link of p.links) {
        if (!isInternal(link.href)) continue;
        const target = withoutHash(link.href);
        const status = statusOf.get(target);
        if (status !== 200) broken.push(`${p.url}: ${link.raw} answers ${status}`);
        const hash = decodeURIComponent(new URL(link.href).hash.slice(1));
        if (hash === '') continue;
        anchors++;
        const targetPage = pages.get(target);
        if (targetPage === undefined)
          broken.push(`${p.url}: ${link.raw} points into a page that was not crawled`);
        else if (!targetPage.ids.has(hash)) broken.push(`${p.url}: ${link.raw}: no #${hash} on ${target}`);
      }
      for (const asset of p.assets) {
        if (statusOf.get(withoutHash(asset)) !== 200) broken.push(`${p.url}: asset ${asset} is missing`);
      }
    }
    expect(broken).toEqual([]);
    // The check did look at something: many links, several with anchors.
    expect(targets.size).toBeGreaterThan(10);
    expect(anchors).toBeGreaterThan(5);
  });

  it('has the footer signature, exactly, on every page', () => {
    const wrong = [...pages.values()]
      .filter(
        (p) => p.footer.count !== 1 || p.footer.text.trim() !== FOOTER_TEXT || p.footer.href !== FOOTER_HREF,
      )
      .map((p) => `${p.url}: ${JSON.stringify(p.footer)}`);
    expect(wrong).toEqual([]);
    expect(pages.size).toBeGreaterThanOrEqual(12);
  });

  it('has no console or page errors and an accessible name on every control', () => {
    expect(problems.errors).toEqual([]);
    const missing = [...pages.values()].flatMap((p) => p.names.missing.map((m) => `${p.url}: ${m}`));
    expect(missing).toEqual([]);
  });

  it('fits every page at phone width and takes screenshots of the index and the API reference', async () => {
    await page.setViewportSize({ ...PHONE });
    const overflowing: string[] = [];
    for (const url of pages.keys()) {
      await page.goto(url);
      const w = await pageWidths(page);
      if (w.scrollWidth > w.innerWidth + 1) overflowing.push(`${url}: ${w.scrollWidth} > ${w.innerWidth}`);
    }
    expect(overflowing).toEqual([]);
    await page.setViewportSize({ ...DESKTOP });

    for (const [name, path] of [
      ['docs-index', '/docs/'],
      ['docs-api', '/docs/api.html'],
    ] as const) {
      await page.goto(`${gw.url}${path}`);
      const shots = await screenshots(page, name);
      expect(shots.phone.scrollWidth).toBeLessThanOrEqual(shots.phone.innerWidth + 1);
    }
    expect(problems.errors).toEqual([]);
  });
});
