/*
 * ProxyXAI balance page (usage.<domain> or /billing/ on the gateway). Vanilla JS, no build step.
 * Reads every sk-Xvs… key from the text area, remembers them in localStorage['api-key-input'] and
 * queries GET /dashboard/x_user/info and GET /v1/dashboard/billing/usage for each key in parallel.
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

  /* ---------- balance page ---------- */

  const KEY_PATTERN = /sk-Xvs\w+/g;
  const KEYS_STORAGE = 'api-key-input';
  const COLUMNS = [
    'API Key 密钥',
    'Account 账户',
    'Credit cards 额度卡',
    'Used / Balance 已用/余额',
    'Usage 用量',
    'Requests 请求',
    'RPM 速率',
  ];

  const api = resolveApiBase();
  const $ = (id) => document.getElementById(id);
  const input = $('api-key-input');
  const form = $('query-form');
  const queryButton = $('query-button');
  const clearButton = $('clear-button');
  const statusLine = $('status');
  const results = $('results');
  const charts = [];
  let generation = 0;

  function extractKeys(text) {
    const seen = new Set();
    for (const m of String(text || '').matchAll(KEY_PATTERN)) seen.add(m[0]);
    return Array.from(seen);
  }

  function maskKey(key) {
    return key.length <= 12 ? key.slice(0, 4) + '***' : key.slice(0, 8) + '***' + key.slice(-4);
  }

  function num(v) {
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    return typeof n === 'number' && Number.isFinite(n) ? n : null;
  }

  function fmtMoney(v) {
    const n = num(v);
    if (n === null) return '—';
    const abs = Math.abs(n);
    if (abs >= 1e8) return '$' + n.toExponential(2);
    if (abs > 0 && abs < 0.01) return '$' + n.toFixed(4);
    return '$' + n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function fmtInt(v) {
    const n = num(v);
    if (n === null) return '—';
    if (Math.abs(n) >= 1e8) return n.toExponential(2);
    return Math.round(n).toLocaleString('en-US');
  }

  function pct(part, whole) {
    const p = num(part);
    const w = num(whole);
    if (p === null || w === null || w <= 0) return '—';
    return ((p / w) * 100).toFixed(1) + '%';
  }

  function pad2(n) {
    return String(n).padStart(2, '0');
  }

  function ymd(d) {
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate());
  }

  function fmtDate(value, withTime) {
    if (value == null || value === '') return '—';
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return withTime ? ymd(d) + ' ' + pad2(d.getHours()) + ':' + pad2(d.getMinutes()) : ymd(d);
  }

  function labelled(label, value, extraClass) {
    return el(
      'div',
      { className: 'kv' },
      el('span', { className: 'kv-label' }, label),
      el('span', { className: 'kv-value num' + (extraClass ? ' ' + extraClass : '') }, value),
    );
  }

  function cell(index, content, extraClass) {
    return el('td', { 'data-label': COLUMNS[index], className: extraClass || null }, content);
  }

  function tableShell(index, key) {
    const headRow = el(
      'tr',
      null,
      COLUMNS.map((c) => el('th', { scope: 'col' }, c)),
    );
    const tbody = el('tbody', { id: 'rows-' + index });
    const table = el(
      'table',
      { className: 'info-table', id: 'table-' + index },
      el('caption', { className: 'visually-hidden' }, 'Account summary for key ' + maskKey(key)),
      el('thead', null, headRow),
      tbody,
    );
    return { table, tbody };
  }

  function renderLoading(index, key) {
    const { table, tbody } = tableShell(index, key);
    tbody.appendChild(
      el(
        'tr',
        { id: 'row-' + index, className: 'loading-row' },
        cell(0, el('span', { className: 'mono' }, maskKey(key)), 'key-cell'),
        el(
          'td',
          { colspan: 6, 'data-label': 'Status 状态' },
          el('span', { className: 'muted' }, 'Loading… 查询中'),
        ),
      ),
    );
    return el(
      'section',
      {
        className: 'card key-result',
        id: 'result-' + index,
        'aria-label': 'Key ' + maskKey(key),
        'data-key': maskKey(key),
      },
      el('div', { className: 'table-wrap' }, table),
    );
  }

  function renderError(section, index, key, message) {
    const tbody = section.querySelector('tbody');
    clear(tbody);
    tbody.appendChild(
      el(
        'tr',
        { id: 'row-' + index, className: 'error-row' },
        cell(0, el('span', { className: 'mono' }, maskKey(key)), 'key-cell'),
        el(
          'td',
          { colspan: 6, 'data-label': 'Error 错误', role: 'alert', id: 'error-' + index },
          el('strong', null, 'Query failed 查询失败: '),
          message,
        ),
      ),
    );
    section.classList.add('is-error');
  }

  function cardsTable(cards) {
    if (!Array.isArray(cards) || cards.length === 0) return el('span', { className: 'muted' }, 'No cards 无');
    const now = Date.now();
    const rows = cards.map((c) => {
      const exp = c && c.expires_at ? new Date(c.expires_at).getTime() : NaN;
      const soon = Number.isFinite(exp) && exp - now < 30 * 86400000;
      return el(
        'tr',
        null,
        el('td', { className: 'num' }, fmtMoney(c && c.amount)),
        el('td', { className: 'num' }, fmtMoney(c && c.balance)),
        el(
          'td',
          {
            className: 'num' + (soon ? ' expiring' : ''),
            title: c && c.granted_at ? 'Granted ' + fmtDate(c.granted_at, true) : null,
          },
          fmtDate(c && c.expires_at),
        ),
      );
    });
    return el(
      'table',
      { className: 'cards-table' },
      el('caption', { className: 'visually-hidden' }, 'Credit cards'),
      el(
        'thead',
        null,
        el(
          'tr',
          null,
          el('th', { scope: 'col' }, 'Amount 面额'),
          el('th', { scope: 'col' }, 'Balance 余额'),
          el('th', { scope: 'col' }, 'Expires 到期'),
        ),
      ),
      el('tbody', null, rows),
    );
  }

  function usageMeter(used, limit) {
    const u = num(used);
    const l = num(limit);
    if (u === null || l === null || l <= 0) return null;
    return el('meter', {
      className: 'usage-meter',
      min: 0,
      max: l,
      low: l * 0.8,
      high: l * 0.95,
      optimum: 0,
      value: Math.min(u, l),
      'aria-label': 'Month usage of HardLimit: ' + pct(u, l),
      title: pct(u, l) + ' of HardLimit',
    });
  }

  function renderInfo(section, index, key, info) {
    const tbody = section.querySelector('tbody');
    clear(tbody);
    const daily = info.daily_usage || {};
    // The root account (extension field `unlimited`) has no metered balance or HardLimit: both are null.
    const unlimited = info.unlimited === true || (info.balance === null && info.hard_limit === null);
    const monthly = info.monthly_usage || {};
    const badges = [];
    if (info.status === false) badges.push(el('span', { className: 'badge error' }, 'Disabled 已停用'));
    const soft = num(info.soft_limit);
    const monthUsed = num(monthly.CreditUsed);
    if (soft !== null && soft > 0 && monthUsed !== null && monthUsed >= soft)
      badges.push(el('span', { className: 'badge warn' }, 'SoftLimit reached 已达提醒额度'));
    const balance = num(info.balance);
    if (balance !== null && balance < 1)
      badges.push(el('span', { className: 'badge error' }, 'Balance < $1 余额不足'));

    const account = el(
      'div',
      { className: 'account' },
      el(
        'div',
        { className: 'muted small num' },
        'ID ' + (info.id ?? '—') + ' · Level ' + (info.level ?? '—') + ' · Children ' + fmtInt(info.child),
      ),
      el(
        'div',
        { className: 'account-name' },
        info.name ?? '—',
        info.alias && info.alias !== info.name
          ? el('span', { className: 'muted' }, ' (' + info.alias + ')')
          : null,
      ),
      el('div', { className: 'small wrap-anywhere' }, info.email ?? ''),
      el('div', { className: 'muted small' }, 'Created 创建 ' + fmtDate(info.create_at, true)),
      badges.length ? el('div', { className: 'badges' }, badges) : null,
    );

    tbody.appendChild(
      el(
        'tr',
        { id: 'row-' + index, className: 'info-row' },
        cell(0, el('span', { className: 'mono' }, maskKey(key)), 'key-cell'),
        cell(1, account),
        cell(2, cardsTable(info.credit_balance)),
        cell(3, [
          labelled('Used 已用', fmtMoney(info.credit_used)),
          labelled('Balance 余额', unlimited ? 'Unlimited 无限' : fmtMoney(info.balance), 'strong'),
        ]),
        cell(4, [
          labelled('Today 今日', fmtMoney(daily.CreditUsed)),
          labelled('Month 本月', fmtMoney(monthly.CreditUsed)),
          labelled(
            'HardLimit 月上限',
            unlimited && info.hard_limit == null ? 'None 无' : fmtMoney(info.hard_limit),
          ),
          labelled('Month / HardLimit', pct(monthly.CreditUsed, info.hard_limit)),
          usageMeter(monthly.CreditUsed, info.hard_limit),
        ]),
        cell(5, [
          labelled('Today 今日', fmtInt(daily.Requests)),
          labelled('Month 本月', fmtInt(monthly.Requests)),
          labelled('Today / Month', pct(daily.Requests, monthly.Requests)),
        ]),
        cell(6, el('span', { className: 'num strong' }, fmtInt(info.rate_limit)), 'rpm-cell'),
      ),
    );
  }

  /* ---------- daily spend chart (hand-drawn SVG) ---------- */

  const SVG_NS = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) node.setAttribute(k, String(v));
    for (const c of children) {
      if (c == null) continue;
      node.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v) return m * exp;
    return 10 * exp;
  }

  function axisMoney(v) {
    if (v === 0) return '$0';
    if (v >= 1000) return '$' + (v / 1000).toFixed(v >= 10000 ? 0 : 1) + 'k';
    if (v >= 1) return '$' + (Number.isInteger(v) ? v : v.toFixed(1));
    return '$' + v.toPrecision(2);
  }

  /** Sums `daily_costs` (cents) per day of the current month into USD. */
  function dailySpend(usage, year, month) {
    const days = new Date(year, month + 1, 0).getDate();
    const values = new Array(days).fill(0);
    const costs = usage && Array.isArray(usage.daily_costs) ? usage.daily_costs : [];
    for (const day of costs) {
      const ts = num(day && day.timestamp);
      if (ts === null) continue;
      const d = new Date(ts * 1000);
      if (d.getFullYear() !== year || d.getMonth() !== month) continue;
      const items = Array.isArray(day.line_items) ? day.line_items : [];
      let cents = 0;
      for (const item of items) cents += num(item && item.cost) || 0;
      values[d.getDate() - 1] += cents / 100;
    }
    const sum = values.reduce((a, b) => a + b, 0);
    const total = num(usage && usage.total_usage);
    return { values, total: total !== null ? total / 100 : sum };
  }

  function drawChart(entry) {
    const { holder, values, year, month, today } = entry;
    const width = Math.max(280, Math.floor(holder.clientWidth || 600));
    if (entry.drawnWidth === width) return;
    entry.drawnWidth = width;
    const height = 170;
    const pad = { left: 46, right: 8, top: 12, bottom: 24 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const max = niceMax(Math.max(...values));
    const slot = plotW / values.length;
    const barW = Math.max(2, slot * 0.7);
    const y = (v) => pad.top + plotH - (v / max) * plotH;
    const monthName = new Date(year, month, 1).toLocaleString('en-US', { month: 'long', year: 'numeric' });
    const peak = values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
    const summary =
      'Daily spend in ' +
      monthName +
      ': total ' +
      fmtMoney(entry.total) +
      (values[peak] > 0 ? ', highest ' + fmtMoney(values[peak]) + ' on day ' + (peak + 1) : ', no spend yet');

    const chart = svg('svg', {
      class: 'spend-chart',
      width,
      height,
      viewBox: '0 0 ' + width + ' ' + height,
      role: 'img',
      'aria-label': summary,
    });
    chart.appendChild(svg('title', null, summary));
    for (const frac of [0, 0.5, 1]) {
      const v = max * frac;
      const gy = y(v);
      chart.appendChild(svg('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: gy, y2: gy }));
      chart.appendChild(
        svg('text', { class: 'axis', x: pad.left - 6, y: gy + 4, 'text-anchor': 'end' }, axisMoney(v)),
      );
    }
    values.forEach((v, i) => {
      const x = pad.left + i * slot + (slot - barW) / 2;
      const dayNo = i + 1;
      const label = year + '-' + pad2(month + 1) + '-' + pad2(dayNo) + ': ' + fmtMoney(v);
      if (v > 0) {
        const h = Math.max(1, (v / max) * plotH);
        chart.appendChild(
          svg(
            'rect',
            {
              class: 'bar' + (dayNo === today ? ' today' : ''),
              x,
              y: pad.top + plotH - h,
              width: barW,
              height: h,
              rx: Math.min(2, barW / 3),
            },
            svg('title', null, label),
          ),
        );
      }
      const every = values.length > 20 && width < 480 ? 7 : 5;
      const lastLabelled = values.length - (values.length % every);
      const showLast = dayNo === values.length && values.length - lastLabelled >= every / 2;
      if (dayNo === 1 || dayNo % every === 0 || showLast) {
        chart.appendChild(
          svg(
            'text',
            { class: 'axis', x: pad.left + i * slot + slot / 2, y: height - 6, 'text-anchor': 'middle' },
            dayNo,
          ),
        );
      }
    });
    if (!(values[peak] > 0)) {
      chart.appendChild(
        svg(
          'text',
          {
            class: 'axis empty-note',
            x: pad.left + plotW / 2,
            y: pad.top + plotH / 2,
            'text-anchor': 'middle',
          },
          'No spend this month yet 本月暂无消费',
        ),
      );
    }
    clear(holder);
    holder.appendChild(chart);
  }

  function renderChart(section, index, usage) {
    const now = new Date();
    const year = now.getFullYear();
    const month = now.getMonth();
    const { values, total } = dailySpend(usage, year, month);
    const holder = el('div', { className: 'chart-holder', id: 'chart-' + index });
    const rows = values
      .map((v, i) => ({ v, i }))
      .filter((d) => d.v > 0)
      .map((d) =>
        el(
          'tr',
          null,
          el('td', null, year + '-' + pad2(month + 1) + '-' + pad2(d.i + 1)),
          el('td', { className: 'num' }, fmtMoney(d.v)),
        ),
      );
    const dataTable =
      rows.length > 0
        ? el(
            'details',
            { className: 'chart-data', id: 'chart-data-' + index },
            el('summary', { id: 'chart-data-toggle-' + index }, 'Show data 查看数据'),
            el(
              'table',
              null,
              el('caption', { className: 'visually-hidden' }, 'Daily spend'),
              el(
                'thead',
                null,
                el(
                  'tr',
                  null,
                  el('th', { scope: 'col' }, 'Date 日期'),
                  el('th', { scope: 'col' }, 'Spend 消费'),
                ),
              ),
              el('tbody', null, rows),
            ),
          )
        : null;
    const figure = el(
      'figure',
      { className: 'chart', id: 'chart-figure-' + index },
      el(
        'figcaption',
        null,
        el('span', null, 'Daily spend this month 本月每日消费'),
        el('span', { className: 'num strong', id: 'chart-total-' + index }, fmtMoney(total)),
      ),
      holder,
      dataTable,
    );
    section.appendChild(figure);
    const entry = { holder, values, total, year, month, today: now.getDate(), drawnWidth: 0 };
    charts.push(entry);
    drawChart(entry);
  }

  function renderChartError(section, index, message) {
    section.appendChild(
      el(
        'p',
        { className: 'chart-error muted', id: 'chart-error-' + index },
        'Usage chart unavailable 用量图不可用: ' + message,
      ),
    );
  }

  function usagePath() {
    const now = new Date();
    const start = new Date(now.getFullYear(), now.getMonth(), 1);
    const tomorrow = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
    return '/v1/dashboard/billing/usage?start_date=' + ymd(start) + '&end_date=' + ymd(tomorrow);
  }

  async function queryKey(section, index, key, gen) {
    let info;
    try {
      info = await apiRequest(api.base, 'GET', '/dashboard/x_user/info', key);
      if (!info || typeof info !== 'object') throw new Error('Unexpected answer from the API.');
    } catch (err) {
      if (gen !== generation) return false;
      const msg =
        err && err.message
          ? err.message
          : 'Unauthorised, or suspended for unpaid charges. 未授权或因欠费停用';
      renderError(section, index, key, msg);
      return false;
    }
    if (gen !== generation) return false;
    renderInfo(section, index, key, info);
    try {
      const usage = await apiRequest(api.base, 'GET', usagePath(), key);
      if (gen !== generation) return true;
      renderChart(section, index, usage);
    } catch (err) {
      if (gen !== generation) return true;
      renderChartError(section, index, err && err.message ? err.message : 'unknown error');
    }
    return true;
  }

  async function runQuery(keys) {
    const gen = ++generation;
    clear(results);
    charts.length = 0;
    if (keys.length === 0) {
      statusLine.textContent = 'No sk-Xvs… key found in the text. 未找到密钥';
      return;
    }
    statusLine.textContent = 'Querying ' + keys.length + (keys.length === 1 ? ' key' : ' keys') + '… 查询中';
    queryButton.disabled = true;
    queryButton.setAttribute('aria-busy', 'true');
    const sections = keys.map((key, i) => {
      const s = renderLoading(i, key);
      results.appendChild(s);
      return s;
    });
    const outcomes = await Promise.all(keys.map((key, i) => queryKey(sections[i], i, key, gen)));
    if (gen !== generation) return;
    queryButton.disabled = false;
    queryButton.removeAttribute('aria-busy');
    const ok = outcomes.filter(Boolean).length;
    const failed = outcomes.length - ok;
    statusLine.textContent =
      'Done 完成: ' +
      ok +
      ' ok' +
      (failed ? ', ' + failed + ' failed 失败' : '') +
      ' — ' +
      new Date().toLocaleTimeString();
  }

  function onSubmit(event) {
    if (event) event.preventDefault();
    const keys = extractKeys(input.value);
    if (keys.length > 0) {
      storageSet(KEYS_STORAGE, keys.join('\n'));
      input.value = keys.join('\n');
    }
    void runQuery(keys);
  }

  form.addEventListener('submit', onSubmit);
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) onSubmit(event);
  });
  clearButton.addEventListener('click', () => {
    generation++;
    storageRemove(KEYS_STORAGE);
    input.value = '';
    clear(results);
    charts.length = 0;
    queryButton.disabled = false;
    queryButton.removeAttribute('aria-busy');
    statusLine.textContent = 'Cleared. Keys forgotten by this browser. 已清除';
    input.focus();
  });

  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(() => charts.forEach(drawChart), 150);
  });

  fixSiteLinks('billing');
  setupApiSettings(api, () => {
    const keys = extractKeys(input.value);
    if (keys.length > 0) void runQuery(keys);
  });

  const remembered = extractKeys(storageGet(KEYS_STORAGE));
  if (remembered.length > 0) {
    input.value = remembered.join('\n');
    void runQuery(remembered);
  }
})();
