/**
 * Headless Chromium for the page tests (test/pages), driven by playwright-core with the system's
 * Chromium (Debian's `chromium` package; no browser download). When no executable is found the page
 * tests skip with a notice instead of failing: `describe.skipIf(!chromiumAvailable)`.
 *
 * Also the shared checks of those tests: console and page errors, accessible names of form controls,
 * horizontal overflow at phone width, and screenshots under test/artifacts/ (git-ignored).
 *
 * The project's tsconfig has no DOM lib, so code that runs inside the page uses the small `Dom*`
 * interfaces below instead of the DOM types.
 */
import { accessSync, constants, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Options for `expect.poll` on the page: vitest's default of 1 s is short for a loaded CI machine. */
export const POLL = { timeout: 10_000, interval: 25 } as const;

export const DESKTOP = { width: 1280, height: 800 } as const;
export const PHONE = { width: 390, height: 844 } as const;

/** Directory of the screenshots (git-ignored). */
export const ARTIFACTS_DIR = fileURLToPath(new URL('../artifacts/', import.meta.url));

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** CHROMIUM_PATH when set and executable, else the first Debian/Ubuntu location that exists. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env['CHROMIUM_PATH'];
  const candidates = fromEnv !== undefined && fromEnv !== '' ? [fromEnv, ...CANDIDATES] : CANDIDATES;
  return candidates.find(isExecutable);
}

export const chromiumPath: string | undefined = findChromium();
export const chromiumAvailable = chromiumPath !== undefined;

if (!chromiumAvailable) {
  console.warn(
    `[page tests] SKIPPED: no Chromium executable found (tried CHROMIUM_PATH=${process.env['CHROMIUM_PATH'] ?? '(unset)'}, ${CANDIDATES.join(', ')}). ` +
      'Install Debian\'s "chromium" package or set CHROMIUM_PATH to run the headless-browser page tests.',
  );
}

export async function launchBrowser(): Promise<Browser> {
  if (chromiumPath === undefined) throw new Error('No Chromium executable (see findChromium).');
  return chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS, timeout: 20_000 });
}

/** A fresh context: desktop viewport, en-US, UTC (the gateway under test also runs with TZ=UTC). */
export async function newContext(browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext({
    viewport: { ...DESKTOP },
    locale: 'en-US',
    timezoneId: 'UTC',
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  context.setDefaultTimeout(10_000);
  return context;
}

// ---------------------------------------------------------------------------------------------------
// Minimal DOM shapes for code evaluated inside the page
// ---------------------------------------------------------------------------------------------------

export interface DomElement {
  id: string;
  tagName: string;
  textContent: string | null;
  getAttribute(name: string): string | null;
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): ArrayLike<DomElement>;
}

export interface DomAnchor extends DomElement {
  href: string;
}

export interface DomWindow {
  innerWidth: number;
  document: { documentElement: DomElement & { scrollWidth: number; outerHTML: string } };
}

// ---------------------------------------------------------------------------------------------------
// Console and page errors
// ---------------------------------------------------------------------------------------------------

/** Paths of the API (not of page assets): a 4xx on those can be an intentional failing fetch. */
const API_PATH = /^\/(?:x-keys|x-users|x-dna|x-logs|dashboard|v1)(?:\/|$)/;
const FAILED_4XX = /^Failed to load resource: the server responded with a status of 4\d\d\b/;

export interface PageProblems {
  /** Page errors and console errors, except Chromium's network lines for 4xx API answers. */
  readonly errors: string[];
  /** The filtered network lines, "<status line> <url>", for assertions that they did happen. */
  readonly expected4xx: string[];
}

function isExpected4xx(msg: ConsoleMessage): boolean {
  if (!FAILED_4XX.test(msg.text())) return false;
  try {
    return API_PATH.test(new URL(msg.location().url).pathname);
  } catch {
    return false;
  }
}

/** Records page errors and console errors of `page` from now on. */
export function watchPage(page: Page): PageProblems {
  const problems: PageProblems = { errors: [], expected4xx: [] };
  page.on('pageerror', (err) => problems.errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (isExpected4xx(msg)) problems.expected4xx.push(`${msg.text()} ${msg.location().url}`);
    else problems.errors.push(`console.error: ${msg.text()} (${msg.location().url})`);
  });
  return problems;
}

// ---------------------------------------------------------------------------------------------------
// Accessibility, layout, screenshots
// ---------------------------------------------------------------------------------------------------

/** Opens every <details> so that the controls inside are rendered (and can be checked). */
export async function openAllDetails(page: Page): Promise<void> {
  await page.locator('details:not([open]) > summary').evaluateAll((summaries) => {
    for (const s of summaries as unknown as Array<{ parentElement: { open: boolean } }>) {
      s.parentElement.open = true;
    }
  });
}

export interface NameReport {
  /** Visible controls whose computed accessible name is empty ("<tag>#<id>: <aria snapshot>"). */
  missing: string[];
  /** Visible controls checked. */
  checked: number;
  /** Controls skipped because they are not rendered (hidden panel, closed dialog). */
  skipped: number;
}

/**
 * Computed accessible name of every visible input, select, textarea and button, as Chromium's
 * accessibility tree reports it (Playwright's aria snapshot: `- role "name"`).
 */
export async function checkAccessibleNames(page: Page): Promise<NameReport> {
  const controls = page.locator('input, select, textarea, button');
  const report: NameReport = { missing: [], checked: 0, skipped: 0 };
  const count = await controls.count();
  for (let i = 0; i < count; i++) {
    const control = controls.nth(i);
    if (!(await control.isVisible())) {
      report.skipped++;
      continue;
    }
    report.checked++;
    const snapshot = (await control.ariaSnapshot()).split('\n')[0] ?? '';
    const name = /^- [\w-]+ "((?:[^"\\]|\\.)*)"/.exec(snapshot)?.[1] ?? '';
    if (name.trim() === '') {
      const what = await control.evaluate((el: DomElement) => `${el.tagName.toLowerCase()}#${el.id}`);
      report.missing.push(`${what}: ${snapshot}`);
    }
  }
  return report;
}

/** document.documentElement.scrollWidth and innerWidth of the page as it is laid out now. */
export async function pageWidths(page: Page): Promise<{ scrollWidth: number; innerWidth: number }> {
  return page.evaluate(() => {
    const w = globalThis as unknown as DomWindow;
    return { scrollWidth: w.document.documentElement.scrollWidth, innerWidth: w.innerWidth };
  });
}

/**
 * Full-page screenshots at desktop and phone width, saved as test/artifacts/<name>-desktop.png and
 * <name>-phone.png; returns the widths measured at phone width (for the overflow assertion). The
 * viewport is left at desktop size.
 */
export async function screenshots(
  page: Page,
  name: string,
): Promise<{ phone: { scrollWidth: number; innerWidth: number }; files: string[] }> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const files: string[] = [];
  let phone = { scrollWidth: 0, innerWidth: 0 };
  for (const [label, size] of [
    ['phone', PHONE],
    ['desktop', DESKTOP],
  ] as const) {
    await page.setViewportSize({ ...size });
    // Lets resize handlers (the balance page redraws its charts after 150 ms) settle.
    await page.waitForTimeout(300);
    if (label === 'phone') phone = await pageWidths(page);
    const file = `${ARTIFACTS_DIR}${name}-${label}.png`;
    await page.screenshot({ path: file, fullPage: true });
    files.push(file);
  }
  return { phone, files };
}
