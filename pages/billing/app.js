/*
 * ProxyXAI balance page (usage.<domain> or /billing/ on the gateway). Vanilla JS, no build step.
 * Reads every sk-Xvs… key from the text area, remembers them in localStorage['api-key-input'] and
 * queries GET /dashboard/x_user/info and GET /v1/dashboard/billing/usage for each key in parallel.
 */
(function () {
  'use strict';

  // Shared helpers: common.js, a byte-identical copy in every page folder, loaded before this file.
  const {
    storageGet,
    storageSet,
    storageRemove,
    resolveApiBase,
    fixSiteLinks,
    el,
    clear,
    apiRequest,
    setupApiSettings,
    num,
    fmtUsd,
    pad2,
    ymd,
  } = window.PROXYXAI_COMMON;

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

  function fmtMoney(v) {
    const n = num(v);
    return n === null ? '—' : fmtUsd(n);
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
    // The root account (extension field `unlimited`) has no metered balance or HardLimit; the API
    // reports them as $1e9 (older versions: null) so that the original's page can format them.
    const unlimited = info.unlimited === true || (info.balance === null && info.hard_limit === null);
    const monthly = info.monthly_usage || {};
    const badges = [];
    if (info.status === false) badges.push(el('span', { className: 'badge error' }, 'Disabled 已停用'));
    const soft = unlimited ? null : num(info.soft_limit);
    const monthUsed = num(monthly.CreditUsed);
    if (soft !== null && soft > 0 && monthUsed !== null && monthUsed >= soft)
      badges.push(el('span', { className: 'badge warn' }, 'SoftLimit reached 已达提醒额度'));
    const balance = unlimited ? null : num(info.balance);
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
          labelled('HardLimit 月上限', unlimited ? 'None 无' : fmtMoney(info.hard_limit)),
          labelled('Month / HardLimit', unlimited ? '—' : pct(monthly.CreditUsed, info.hard_limit)),
          unlimited ? null : usageMeter(monthly.CreditUsed, info.hard_limit),
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
