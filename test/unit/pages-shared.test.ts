// The static sites pages/billing, pages/user and pages/docs each deploy alone, so each folder carries its
// own copy of the shared code: common.js (helpers) and base.css (the shared look). These copies must stay
// byte-identical, and every HTML page must load them: base.css before the page's style.css, config.js
// first, common.js before any script that uses window.PROXYXAI_COMMON.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';

const PAGES = fileURLToPath(new URL('../../pages/', import.meta.url));
const SITES = ['billing', 'user', 'docs'] as const;
const SHARED_FILES = ['common.js', 'base.css'] as const;

const read = (...parts: string[]): string => readFileSync(path.join(PAGES, ...parts), 'utf8');
const readBytes = (...parts: string[]): Buffer => readFileSync(path.join(PAGES, ...parts));

const htmlFiles: Array<[string, string]> = SITES.flatMap((site) =>
  readdirSync(path.join(PAGES, site))
    .filter((name) => name.endsWith('.html'))
    .sort()
    .map((name): [string, string] => [site, name]),
);

interface Tag {
  attr: string;
  async: boolean;
}

/** The local scripts (src) and stylesheets (href) of a page, in document order. */
function scriptsOf(html: string): Tag[] {
  return [...html.matchAll(/<script\b([^>]*)>/gi)].flatMap((m) => {
    const attrs = m[1] ?? '';
    const src = /\bsrc="([^"]+)"/i.exec(attrs)?.[1];
    return src ? [{ attr: src, async: /\basync\b/i.test(attrs) }] : [];
  });
}

function stylesheetsOf(html: string): string[] {
  return [...html.matchAll(/<link\b([^>]*)>/gi)].flatMap((m) => {
    const attrs = m[1] ?? '';
    if (!/\brel="stylesheet"/i.test(attrs)) return [];
    const href = /\bhref="([^"]+)"/i.exec(attrs)?.[1];
    return href ? [href] : [];
  });
}

/** What common.js exports, found by running it against a bare `window`. */
function commonExports(): string[] {
  const window: { PROXYXAI_COMMON?: Record<string, unknown> } = {};
  vm.runInNewContext(read('billing', 'common.js'), { window });
  return Object.keys(window.PROXYXAI_COMMON ?? {}).sort();
}

/** Names a page script takes from window.PROXYXAI_COMMON. */
function importsOf(source: string): string[] {
  return [...source.matchAll(/const\s*\{([^}]*)\}\s*=\s*window\.PROXYXAI_COMMON\b/g)].flatMap((m) =>
    (m[1] ?? '')
      .split(',')
      .map((name) => name.trim())
      .filter(Boolean),
  );
}

describe('shared page code', () => {
  it.each(SHARED_FILES)('%s is byte-identical in billing, user and docs', (file) => {
    const [first, ...others] = SITES.map((site) => readBytes(site, file));
    expect(first?.length ?? 0).toBeGreaterThan(1000);
    for (const [i, other] of others.entries()) {
      expect(
        other.equals(first ?? Buffer.alloc(0)),
        `pages/${SITES[i + 1]}/${file} differs from billing`,
      ).toBe(true);
    }
  });

  it('common.js exports the helpers and every name a page script takes from it', () => {
    const exported = commonExports();
    expect(exported).toEqual(expect.arrayContaining(['apiRequest', 'el', 'fixSiteLinks', 'resolveApiBase']));
    for (const [site, script] of [
      ['billing', 'app.js'],
      ['user', 'app.js'],
      ['docs', 'docs.js'],
    ] as const) {
      const source = read(site, script);
      const imported = importsOf(source);
      expect(imported.length, `${site}/${script} takes nothing from common.js`).toBeGreaterThan(0);
      for (const name of imported) expect(exported, `${site}/${script} takes ${name}`).toContain(name);
      // No page keeps its own copy of a shared helper.
      for (const name of exported) {
        expect(source, `${site}/${script} defines ${name} again`).not.toMatch(
          new RegExp(`function\\s+${name}\\s*\\(`),
        );
      }
    }
  });

  it('finds the HTML pages', () => {
    const names = htmlFiles.map(([site, name]) => `${site}/${name}`);
    expect(names).toContain('billing/index.html');
    expect(names).toContain('user/index.html');
    expect(names).toContain('docs/index.html');
  });

  it.each(htmlFiles)('%s/%s links base.css before its style.css', (site, name) => {
    const sheets = stylesheetsOf(read(site, name));
    expect(sheets).toContain('base.css');
    const base = sheets.indexOf('base.css');
    const own = sheets.indexOf('style.css');
    if (own !== -1) expect(base, 'base.css must come first').toBeLessThan(own);
  });

  it.each(htmlFiles)(
    '%s/%s loads config.js first and common.js before the scripts using it',
    (site, name) => {
      const scripts = scriptsOf(read(site, name));
      expect(scripts[0]?.attr, 'config.js is the first script').toBe('config.js');
      const users = scripts.filter(
        (s) =>
          s.attr !== 'common.js' &&
          !/^[a-z]+:|^\/\//i.test(s.attr) &&
          read(site, s.attr).includes('window.PROXYXAI_COMMON'),
      );
      if (`${site}/${name}` === 'billing/index.html' || `${site}/${name}` === 'user/index.html') {
        expect(users.map((s) => s.attr)).toEqual(['app.js']);
      }
      if (users.length === 0) return;
      const common = scripts.findIndex((s) => s.attr === 'common.js');
      expect(common, 'common.js is loaded').toBeGreaterThan(0);
      expect(scripts[common]?.async, 'common.js must not be async').toBe(false);
      for (const user of users) {
        expect(common, `common.js before ${user.attr}`).toBeLessThan(scripts.indexOf(user));
      }
    },
  );
});
