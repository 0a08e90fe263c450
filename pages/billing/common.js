/*
 * ProxyXAI pages — code shared by the balance (billing), sub-account (user) and docs sites. Vanilla JS, no
 * build step. Every page folder carries a byte-identical copy of this file so that each one deploys alone
 * (test/unit/pages-shared.test.ts fails when the copies drift apart): edit one, then copy it to the others.
 * Load it after config.js and before the page's own script. It defines window.PROXYXAI_COMMON and does
 * nothing else until a page calls it.
 */
(function () {
  'use strict';

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

  /**
   * Tiny DOM builder: el('td', { className: 'num', 'aria-label': 'x' }, 'text', childNode, [more]).
   * Strings always become text nodes, never HTML.
   */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'className') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    append(node, children);
    return node;
  }

  function append(node, child) {
    if (child == null || child === false) return;
    if (Array.isArray(child)) for (const c of child) append(node, c);
    else if (typeof child === 'object' && child.nodeType) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  /** Calls the API and returns parsed JSON; throws an Error whose message is the server's error.message. */
  async function apiRequest(base, method, path, key, body) {
    const headers = { Accept: 'application/json' };
    if (key) headers.Authorization = 'Bearer ' + key;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller ? window.setTimeout(() => controller.abort(), 30000) : 0;
    if (controller) init.signal = controller.signal;
    let res;
    try {
      res = await fetch(base + path, init);
    } catch (err) {
      window.clearTimeout(timer);
      const timedOut = err && err.name === 'AbortError';
      const e = new Error(
        timedOut
          ? 'The API at ' + displayBase(base) + ' did not answer within 30 s.'
          : 'Cannot reach the API at ' +
              displayBase(base) +
              ' (network error, wrong address or CORS not allowed for this page).',
      );
      e.status = 0;
      throw e;
    }
    let text = '';
    try {
      text = await res.text();
    } finally {
      window.clearTimeout(timer);
    }
    let data = null;
    if (text !== '') {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!res.ok) {
      let message = '';
      if (data && typeof data === 'object') {
        if (data.error && typeof data.error === 'object' && typeof data.error.message === 'string') {
          message = data.error.message;
        } else if (typeof data.error === 'string') message = data.error;
        else if (typeof data.message === 'string') message = data.message;
      }
      if (!message) message = ('HTTP ' + res.status + ' ' + (res.statusText || '')).trim();
      const e = new Error(message);
      e.status = res.status;
      e.code = data && data.error && typeof data.error === 'object' ? data.error.code : undefined;
      throw e;
    }
    if (data === null && text !== '') {
      const e = new Error('The API answered with something that is not JSON (is the API address right?).');
      e.status = res.status;
      throw e;
    }
    return data;
  }

  /** Shows the resolved API base and lets the user change it (stored like ?api=). */
  function setupApiSettings(state, onChange) {
    const display = document.getElementById('api-base-display');
    const input = document.getElementById('api-base-input');
    const save = document.getElementById('api-base-save');
    const reset = document.getElementById('api-base-reset');
    const note = document.getElementById('api-base-note');
    const render = () => {
      if (display) display.textContent = displayBase(state.base);
      if (input) input.value = state.source === 'query' || state.source === 'saved' ? state.base : '';
      if (input) input.placeholder = displayBase(state.base);
    };
    render();
    if (save && input) {
      save.addEventListener('click', () => {
        const v = normalizeBase(input.value);
        if (v === null) {
          if (note) note.textContent = 'Enter a full http:// or https:// URL.';
          input.focus();
          return;
        }
        if (v === '') storageRemove(API_BASE_STORAGE);
        else storageSet(API_BASE_STORAGE, v);
        Object.assign(state, resolveApiBaseIgnoringQuery());
        render();
        if (note) note.textContent = 'Saved. Requests now go to ' + displayBase(state.base) + '.';
        onChange();
      });
    }
    if (reset) {
      reset.addEventListener('click', () => {
        storageRemove(API_BASE_STORAGE);
        Object.assign(state, resolveApiBaseIgnoringQuery());
        render();
        if (note) note.textContent = 'Reset. Requests now go to ' + displayBase(state.base) + '.';
        onChange();
      });
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

  /* ---------- formatting ---------- */

  /** A finite number from a number or a numeric string, else null. */
  function num(v) {
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    return typeof n === 'number' && Number.isFinite(n) ? n : null;
  }

  /** A finite number as US dollars: 2 decimals, 4 below one cent, exponent from 1e8. */
  function fmtUsd(n) {
    const abs = Math.abs(n);
    if (abs >= 1e8) return '$' + n.toExponential(2);
    if (abs > 0 && abs < 0.01) return '$' + n.toFixed(4);
    return '$' + n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function pad2(n) {
    return String(n).padStart(2, '0');
  }

  /** YYYY-MM-DD in local time. */
  function ymd(d) {
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate());
  }

  window.PROXYXAI_COMMON = Object.freeze({
    storageGet,
    storageSet,
    storageRemove,
    normalizeBase,
    isLocalHost,
    resolveApiBase,
    resolveApiBaseIgnoringQuery,
    displayBase,
    fixSiteLinks,
    el,
    append,
    clear,
    apiRequest,
    setupApiSettings,
    num,
    fmtUsd,
    pad2,
    ymd,
  });
})();
