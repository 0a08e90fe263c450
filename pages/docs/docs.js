/*
 * ProxyXAI docs: rewrites the links to the balance and sub-account sites when the docs are deployed on
 * their own host, and shows the API address this site's pages would use. Vanilla JS, no build step.
 */
(function () {
  'use strict';

  /* ---------- shared helpers (copied into every page folder so that each one deploys alone) ---------- */

  const API_BASE_STORAGE = 'proxyxai-api-base';

  function storageGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null;
    }
  }

  function storageSet(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch {
      /* storage disabled: nothing is remembered */
    }
  }

  function storageRemove(key) {
    try {
      window.localStorage.removeItem(key);
    } catch {
      /* ignore */
    }
  }

  /** '' for "same origin", a normalised http(s) URL without trailing slash, or null when invalid. */
  function normalizeBase(value) {
    const v = String(value ?? '').trim();
    if (v === '') return '';
    try {
      const u = new URL(v);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
      return (u.origin + u.pathname).replace(/\/+$/, '');
    } catch {
      return null;
    }
  }

  /** localhost, *.localhost, IPv4/IPv6 literals and single-label names: the API is on the same origin. */
  function isLocalHost(host) {
    const h = host.replace(/^\[|\]$/g, '');
    return (
      h === '' ||
      h === 'localhost' ||
      h.endsWith('.localhost') ||
      /^\d{1,3}(\.\d{1,3}){3}$/.test(h) ||
      h.includes(':') ||
      !h.includes('.')
    );
  }

  /**
   * API base resolution: ?api=<url> (remembered in localStorage) > a remembered ?api= >
   * PROXYXAI_CONFIG.apiBase when non-null ('' = same origin) > same origin on localhost / IP hosts >
   * https://api.<last two labels of the host name> (as the original pages did).
   * `?api=` with an empty value forgets the remembered address.
   */
  function resolveApiBase() {
    const params = new URLSearchParams(window.location.search);
    if (params.has('api')) {
      const fromQuery = normalizeBase(params.get('api'));
      if (fromQuery === '') storageRemove(API_BASE_STORAGE);
      else if (fromQuery) {
        storageSet(API_BASE_STORAGE, fromQuery);
        return { base: fromQuery, source: 'query' };
      }
    }
    return resolveApiBaseIgnoringQuery();
  }

  /** Human-readable form of an API base ('' is the page's own origin). */
  function displayBase(base) {
    if (base !== '') return base;
    const origin = window.location.origin;
    return origin && origin !== 'null' ? origin : '(same origin)';
  }

  /**
   * Links between the three sites. Served together (gateway: /billing/, /user/, /docs/) the relative hrefs
   * in the HTML are right; deployed alone on usage.<domain> / sub.<domain> / <domain> they are rewritten to
   * those hosts, as in the original deployment example.
   */
  function fixSiteLinks(currentSite) {
    const together = window.location.pathname.includes('/' + currentSite + '/');
    const host = window.location.hostname;
    if (together || isLocalHost(host)) return;
    const domain = host.split('.').slice(-2).join('.');
    const proto = window.location.protocol === 'http:' ? 'http://' : 'https://';
    const hosts = { billing: 'usage.' + domain, user: 'sub.' + domain, docs: domain };
    for (const link of document.querySelectorAll('a[data-site]')) {
      const site = link.getAttribute('data-site');
      if (site && site !== currentSite && hosts[site]) {
        link.setAttribute('href', proto + hosts[site] + '/' + (link.getAttribute('data-page') || ''));
      }
    }
  }

  /** Like resolveApiBase(), but ignoring a ?api= still present in the address bar. */
  function resolveApiBaseIgnoringQuery() {
    const saved = normalizeBase(storageGet(API_BASE_STORAGE));
    if (saved) return { base: saved, source: 'saved' };
    const cfg = window.PROXYXAI_CONFIG;
    if (cfg && typeof cfg.apiBase === 'string') {
      const fromConfig = normalizeBase(cfg.apiBase);
      if (fromConfig === '') return { base: '', source: 'config' };
      if (fromConfig) return { base: fromConfig, source: 'config' };
    }
    const host = window.location.hostname;
    if (isLocalHost(host)) return { base: '', source: 'same-origin' };
    return { base: 'https://api.' + host.split('.').slice(-2).join('.'), source: 'derived' };
  }

  /* ---------- docs ---------- */

  fixSiteLinks('docs');
  const api = resolveApiBase();
  for (const node of document.querySelectorAll('.detected-api-base')) {
    node.textContent = displayBase(api.base);
  }
})();
