/*
 * ProxyXAI balance page (usage.<domain> or /billing/ on the gateway). Vanilla JS, no build step.
 * Reads every sk-Xvs… key from the text area, remembers them in localStorage['api-key-input'] and
 * queries GET /dashboard/x_user/info and GET /v1/dashboard/billing/usage for each key in parallel.
 * Each key's daily chart can split the spend by model; its Requests view (opened on demand) pages
 * through GET /x-logs with filters and saves the same filters' CSV export.
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
    append,
    clear,
    apiRequest,
    setupApiSettings,
    num,
    fmtUsd,
    pad2,
    ymd,
    displayBase,
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

  /**
   * Sums `daily_costs` (cents) per day of the current month into USD, in total and per model. `models` is
   * one entry per model name: its cents per day (as the API's line items say, summed when a day lists a
   * model twice) and its month total in cents; sorted by total spend, largest first, then by name.
   */
  function dailySpend(usage, year, month) {
    const days = new Date(year, month + 1, 0).getDate();
    const values = new Array(days).fill(0);
    const perModel = new Map();
    const costs = usage && Array.isArray(usage.daily_costs) ? usage.daily_costs : [];
    for (const day of costs) {
      const ts = num(day && day.timestamp);
      if (ts === null) continue;
      const d = new Date(ts * 1000);
      if (d.getFullYear() !== year || d.getMonth() !== month) continue;
      const items = Array.isArray(day.line_items) ? day.line_items : [];
      let cents = 0;
      for (const item of items) {
        const c = num(item && item.cost) || 0;
        cents += c;
        const name = item && item.name != null ? String(item.name) : '';
        let m = perModel.get(name);
        if (!m) perModel.set(name, (m = { name, cents: new Array(days).fill(0), total: 0 }));
        m.cents[d.getDate() - 1] += c;
        m.total += c;
      }
      values[d.getDate() - 1] += cents / 100;
    }
    const sum = values.reduce((a, b) => a + b, 0);
    const total = num(usage && usage.total_usage);
    const models = Array.from(perModel.values())
      .filter((m) => m.total > 0)
      .sort((a, b) => b.total - a.total || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { values, models, total: total !== null ? total / 100 : sum };
  }

  /* Colours of the per-model split: each model keeps its colour (a hash of its name into the palette),
   * the same in every chart of the page and, as long as no two of its models hash alike, on every visit;
   * a model whose colour is taken gets the next free one, and beyond the palette a hue from the hash.
   * Readable on the light and the dark theme. */
  const MODEL_COLOURS = [
    '#3b6fe0',
    '#e07b2e',
    '#1f9d6a',
    '#9b5ad6',
    '#d9467a',
    '#1697a8',
    '#b8860b',
    '#6b7f8e',
    '#c0392b',
    '#5c8a1f',
    '#7c6cf0',
    '#a0522d',
  ];

  function nameHash(name) {
    let h = 0x811c9dc5;
    for (let i = 0; i < name.length; i++) {
      h ^= name.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return h;
  }

  /** Colours given so far on this page: a model keeps its colour in every chart of the page. */
  const assignedColours = new Map();

  /** Map of model name -> colour for the models of one chart, new ones assigned in name order. */
  function modelColours(names) {
    const used = new Set(assignedColours.values());
    for (const name of names.slice().sort()) {
      if (assignedColours.has(name)) continue;
      const h = nameHash(name);
      let colour = null;
      for (let i = 0; i < MODEL_COLOURS.length; i++) {
        const c = MODEL_COLOURS[(h + i) % MODEL_COLOURS.length];
        if (!used.has(c)) {
          colour = c;
          break;
        }
      }
      if (colour === null) colour = 'hsl(' + (h % 360) + ' 55% 50%)';
      used.add(colour);
      assignedColours.set(name, colour);
    }
    return new Map(names.map((name) => [name, assignedColours.get(name)]));
  }

  const SPLIT_STORAGE = 'billing-chart-split';

  function dayLabel(year, month, dayNo) {
    return year + '-' + pad2(month + 1) + '-' + pad2(dayNo);
  }

  function drawChart(entry) {
    const { holder, values, year, month, today } = entry;
    const split = entry.split === true;
    const width = Math.max(280, Math.floor(holder.clientWidth || 600));
    if (entry.drawnWidth === width && entry.drawnSplit === split) return;
    entry.drawnWidth = width;
    entry.drawnSplit = split;
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
      (values[peak] > 0
        ? ', highest ' + fmtMoney(values[peak]) + ' on day ' + (peak + 1)
        : ', no spend yet') +
      (split && entry.models.length > 0
        ? '; by model: ' + entry.models.map((m) => m.name + ' ' + fmtMoney(m.total / 100)).join(', ')
        : '');

    const chart = svg('svg', {
      class: 'spend-chart' + (split ? ' split' : ''),
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
      const date = dayLabel(year, month, dayNo);
      const label = date + ': ' + fmtMoney(v);
      if (v > 0 && !split) {
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
              'data-day': date,
            },
            svg('title', null, label),
          ),
        );
      } else if (v > 0) {
        // One segment per model, stacked from the bottom in legend order (largest spender first).
        const group = svg('g', { class: 'day-stack', 'data-day': date });
        let base = pad.top + plotH;
        for (const m of entry.models) {
          const c = m.cents[i];
          if (!(c > 0)) continue;
          const h = Math.max(1, (c / 100 / max) * plotH);
          base -= h;
          group.appendChild(
            svg(
              'rect',
              {
                class: 'seg',
                x,
                y: base,
                width: barW,
                height: h,
                fill: entry.colours.get(m.name),
                'data-model': m.name,
                'data-day': date,
                'data-cost-cents': c,
              },
              svg(
                'title',
                null,
                date + ' · ' + m.name + ': ' + fmtMoney(c / 100) + ' (day ' + fmtMoney(v) + ')',
              ),
            ),
          );
        }
        chart.appendChild(group);
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

  /** The legend of the split chart: one item per model, its colour, name and month total. */
  function renderLegend(entry) {
    const { legend } = entry;
    clear(legend);
    legend.hidden = !entry.split;
    if (!entry.split) return;
    if (entry.models.length === 0) {
      legend.appendChild(el('li', { className: 'muted' }, 'No spend by model yet 暂无模型消费'));
      return;
    }
    for (const m of entry.models) {
      legend.appendChild(
        el(
          'li',
          { 'data-model': m.name, 'data-cost-cents': String(m.total) },
          el('span', {
            className: 'swatch',
            'aria-hidden': 'true',
            style: 'background:' + entry.colours.get(m.name),
          }),
          el('span', { className: 'legend-name' }, m.name === '' ? '(no model)' : m.name),
          el('span', { className: 'legend-cost num' }, fmtMoney(m.total / 100)),
        ),
      );
    }
  }

  /** The "Show data" table: spend per day, or per day and model when the chart is split. */
  function renderChartData(entry) {
    const { dataTable, values, year, month } = entry;
    if (!dataTable) return;
    const rows = [];
    values.forEach((v, i) => {
      if (!(v > 0)) return;
      const date = dayLabel(year, month, i + 1);
      if (!entry.split) {
        rows.push(el('tr', null, el('td', null, date), el('td', { className: 'num' }, fmtMoney(v))));
        return;
      }
      for (const m of entry.models) {
        const c = m.cents[i];
        if (!(c > 0)) continue;
        rows.push(
          el(
            'tr',
            null,
            el('td', null, date),
            el('td', { className: 'wrap-anywhere' }, m.name),
            el('td', { className: 'num' }, fmtMoney(c / 100)),
          ),
        );
      }
    });
    const head = [el('th', { scope: 'col' }, 'Date 日期')];
    if (entry.split) head.push(el('th', { scope: 'col' }, 'Model 模型'));
    head.push(el('th', { scope: 'col' }, 'Spend 消费'));
    const table = dataTable.querySelector('table');
    clear(table);
    table.appendChild(
      el('caption', { className: 'visually-hidden' }, entry.split ? 'Daily spend by model' : 'Daily spend'),
    );
    table.appendChild(el('thead', null, el('tr', null, head)));
    table.appendChild(el('tbody', null, rows));
  }

  function renderChart(section, index, usage) {
    const now = new Date();
    const year = now.getFullYear();
    const month = now.getMonth();
    const { values, models, total } = dailySpend(usage, year, month);
    const holder = el('div', { className: 'chart-holder', id: 'chart-' + index });
    const hasSpend = values.some((v) => v > 0);
    const dataTable = hasSpend
      ? el(
          'details',
          { className: 'chart-data', id: 'chart-data-' + index },
          el('summary', { id: 'chart-data-toggle-' + index }, 'Show data 查看数据'),
          el('table', null),
        )
      : null;
    const split = storageGet(SPLIT_STORAGE) === '1';
    const toggle = el('input', {
      type: 'checkbox',
      id: 'chart-split-' + index,
      className: 'split-toggle',
      'aria-controls': 'chart-' + index + ' chart-legend-' + index,
    });
    toggle.checked = split;
    const legend = el('ul', {
      className: 'chart-legend',
      id: 'chart-legend-' + index,
      'aria-label': 'Spend this month by model 本月按模型消费',
    });
    const figure = el(
      'figure',
      { className: 'chart', id: 'chart-figure-' + index },
      el(
        'figcaption',
        null,
        el('span', null, 'Daily spend this month 本月每日消费'),
        el(
          'span',
          { className: 'chart-tools' },
          el('label', { className: 'check', for: 'chart-split-' + index }, toggle, ' Split by model 按模型'),
          el('span', { className: 'num strong', id: 'chart-total-' + index }, fmtMoney(total)),
        ),
      ),
      holder,
      legend,
      dataTable,
    );
    section.appendChild(figure);
    const entry = {
      holder,
      legend,
      dataTable,
      values,
      models,
      colours: modelColours(models.map((m) => m.name)),
      split,
      total,
      year,
      month,
      today: now.getDate(),
      drawnWidth: 0,
      drawnSplit: false,
    };
    toggle.addEventListener('change', () => {
      entry.split = toggle.checked;
      storageSet(SPLIT_STORAGE, entry.split ? '1' : '0');
      drawChart(entry);
      renderLegend(entry);
      renderChartData(entry);
    });
    charts.push(entry);
    drawChart(entry);
    renderLegend(entry);
    renderChartData(entry);
    return models.map((m) => m.name);
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

  /* ---------- request log of a key (GET /x-logs) ---------- */

  const OUTCOMES = [
    'completed',
    'client-gone',
    'upstream-error',
    'refused',
    'failed',
    'cancelled',
    'expired',
    'incomplete',
  ];
  const OUTCOME_BADGE = {
    completed: 'ok',
    refused: 'error',
    failed: 'error',
    'upstream-error': 'error',
    'client-gone': 'warn',
    cancelled: 'warn',
    expired: 'warn',
    incomplete: 'warn',
  };
  const REQ_COLUMNS = [
    ['time', 'Time 时间'],
    ['account', 'Account 账户'],
    ['endpoint', 'Endpoint 接口'],
    ['model', 'Model 模型'],
    ['stream', 'Stream 流式'],
    ['prompt_tokens', 'Prompt 输入'],
    ['cached_tokens', 'Cached 缓存'],
    ['completion_tokens', 'Completion 输出'],
    ['reasoning_tokens', 'Reasoning 推理'],
    ['cost', 'Cost 费用'],
    ['outcome', 'Outcome 结果'],
    ['status', 'Status 状态'],
    ['latency', 'Latency / TTFB 延迟/首字节'],
  ];
  const DEFAULT_PAGE_SIZE = 50;
  const MAX_PAGE_SIZE = 1000;

  /** Local date and time with seconds: "YYYY-MM-DD" and "HH:MM:SS" on two lines (text: one space). */
  function dateTimeCell(value) {
    const d = new Date(value);
    if (value == null || Number.isNaN(d.getTime())) return '—';
    return [
      el('span', { className: 'req-day' }, ymd(d)),
      ' ',
      el(
        'span',
        { className: 'req-clock' },
        pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds()),
      ),
    ];
  }

  /** Text with a line-break opportunity after each "/" and "_" (paths and error codes). */
  function breakable(text) {
    const parts = [];
    for (const piece of String(text).split(/(?<=[/_])/)) parts.push(piece, el('wbr'));
    parts.pop();
    return parts;
  }

  function fmtMs(v) {
    const n = num(v);
    return n === null ? '—' : fmtInt(n) + ' ms';
  }

  /** "YYYY-MM-DD" of a date input -> ISO instant of local midnight of that day (+ `plusDays`). */
  function dayStart(value, plusDays) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
    if (!m) return null;
    return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + plusDays).toISOString();
  }

  /** The server's error message of a failed answer (OpenAI shape), else the status line. */
  async function errorOf(res) {
    let message = '';
    try {
      const data = JSON.parse(await res.text());
      if (data && data.error && typeof data.error.message === 'string') message = data.error.message;
      else if (data && typeof data.error === 'string') message = data.error;
    } catch {
      /* not JSON */
    }
    const e = new Error(message || ('HTTP ' + res.status + ' ' + (res.statusText || '')).trim());
    e.status = res.status;
    return e;
  }

  /**
   * GET on the API with the key, returning the Response (headers needed: x-page, x-next-cursor, …).
   * The timeout covers the wait for the headers only: a long CSV export may take its time to arrive.
   */
  async function keyFetch(path, key, accept) {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = controller ? window.setTimeout(() => controller.abort(), 30000) : 0;
    let res;
    try {
      res = await fetch(api.base + path, {
        method: 'GET',
        headers: { Accept: accept, Authorization: 'Bearer ' + key },
        cache: 'no-store',
        signal: controller ? controller.signal : undefined,
      });
    } catch (err) {
      throw new Error(
        err && err.name === 'AbortError'
          ? 'The API at ' + displayBase(api.base) + ' did not answer within 30 s.'
          : 'Cannot reach the API at ' +
              displayBase(api.base) +
              ' (network error, wrong address or CORS not allowed for this page).',
      );
    } finally {
      window.clearTimeout(timer);
    }
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  function field(id, label, control, extraClass) {
    return el(
      'div',
      { className: 'field' + (extraClass ? ' ' + extraClass : '') },
      el('label', { for: id }, label),
      control,
    );
  }

  /** The request-log view of one key: filters, a page of rows, Previous / Next and a CSV download. */
  function renderRequestsView(section, index, key, models) {
    const id = (name) => 'req-' + name + '-' + index;
    const view = {
      index,
      key,
      loaded: false,
      token: 0,
      filters: null,
      cursors: [null],
      nextCursor: null,
      total: null,
      totalPages: null,
    };

    const fromInput = el('input', { type: 'date', id: id('from'), name: 'from' });
    const toInput = el('input', { type: 'date', id: id('to'), name: 'to' });
    const modelInput = el('input', {
      type: 'text',
      id: id('model'),
      name: 'model',
      list: id('models'),
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'any 全部',
    });
    const modelList = el('datalist', { id: id('models') });
    const outcomeSelect = el(
      'select',
      { id: id('outcome'), name: 'outcome' },
      el('option', { value: '' }, 'any 全部'),
      OUTCOMES.map((o) => el('option', { value: o }, o)),
    );
    const minCostInput = el('input', {
      type: 'number',
      id: id('min-cost'),
      name: 'min_cost',
      min: 0,
      step: 'any',
      inputmode: 'decimal',
      placeholder: '0',
    });
    const accountInput = el('input', {
      type: 'text',
      id: id('account'),
      name: 'account',
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'this key 本账户',
      'aria-describedby': id('account-hint'),
    });
    const descendantsInput = el('input', {
      type: 'checkbox',
      id: id('descendants'),
      name: 'descendants',
      checked: true,
    });
    const sizeInput = el('input', {
      type: 'number',
      id: id('size'),
      name: 'size',
      min: 1,
      max: MAX_PAGE_SIZE,
      step: 1,
      inputmode: 'numeric',
      value: DEFAULT_PAGE_SIZE,
    });
    const applyButton = el('button', { type: 'submit', className: 'primary', id: id('apply') }, 'Apply 筛选');
    const resetButton = el('button', { type: 'reset', id: id('reset') }, 'Reset 重置');
    const prevButton = el(
      'button',
      { type: 'button', className: 'small', id: id('prev'), disabled: true },
      '← Previous 上一页',
    );
    const nextButton = el(
      'button',
      { type: 'button', className: 'small', id: id('next'), disabled: true },
      'Next 下一页 →',
    );
    const csvButton = el(
      'button',
      { type: 'button', className: 'small', id: id('csv') },
      'Download CSV 下载',
    );
    const pageLabel = el('span', { className: 'req-page num', id: id('page'), 'aria-live': 'polite' });
    const statusEl = el('p', { className: 'req-status muted', id: id('status'), role: 'status' });
    const errorEl = el('p', { className: 'notice error', id: id('error'), role: 'alert' });
    const tbody = el('tbody', { id: id('rows') });
    const table = el(
      'table',
      { className: 'req-table', id: id('table') },
      el('caption', { className: 'visually-hidden' }, 'Requests of key ' + maskKey(key)),
      el(
        'thead',
        null,
        el(
          'tr',
          null,
          REQ_COLUMNS.map(([name, label]) => el('th', { scope: 'col', 'data-field': name }, label)),
        ),
      ),
      tbody,
    );

    const form = el(
      'form',
      { className: 'req-filters', id: id('form'), novalidate: true, 'aria-label': 'Request filters 筛选' },
      field(id('from'), 'From 起始日期', fromInput),
      field(id('to'), 'To 截止日期 (incl.)', toInput),
      field(id('model'), 'Model 模型', [modelInput, modelList]),
      field(id('outcome'), 'Outcome 结果', outcomeSelect),
      field(id('min-cost'), 'Min cost 最低费用 (USD)', minCostInput),
      field(id('account'), 'Account 账户 (name, ID or email)', [
        accountInput,
        el('span', { className: 'visually-hidden', id: id('account-hint') }, 'Empty: this key’s own account'),
      ]),
      field(id('size'), 'Rows per page 每页行数', sizeInput),
      el(
        'div',
        { className: 'field field-check' },
        el(
          'label',
          { className: 'check', for: id('descendants') },
          descendantsInput,
          ' Include sub-accounts 含子账号',
        ),
      ),
      el('div', { className: 'actions field-actions' }, applyButton, resetButton),
    );

    const details = el(
      'details',
      { className: 'requests', id: 'requests-' + index },
      el(
        'summary',
        { id: 'requests-toggle-' + index },
        'Requests 请求记录',
        el('span', { className: 'muted small' }, ' — this key’s requests and its sub-accounts’'),
      ),
      form,
      errorEl,
      el(
        'div',
        { className: 'req-toolbar' },
        el('div', { className: 'req-pager' }, prevButton, pageLabel, nextButton),
        csvButton,
      ),
      statusEl,
      el('div', { className: 'table-wrap' }, table),
    );
    section.appendChild(details);

    const knownModels = new Set();
    function addModels(names) {
      for (const name of names) {
        if (typeof name !== 'string' || name === '' || knownModels.has(name)) continue;
        knownModels.add(name);
        modelList.appendChild(el('option', { value: name }));
      }
    }
    addModels(models || []);

    /** The filters as query parameters (null + a message when a value is not acceptable). */
    function readFilters() {
      const p = new URLSearchParams();
      const from = fromInput.value ? dayStart(fromInput.value, 0) : null;
      const to = toInput.value ? dayStart(toInput.value, 1) : null;
      if (fromInput.value && from === null)
        return { error: 'From: enter a date. 请输入日期', focus: fromInput };
      if (toInput.value && to === null) return { error: 'To: enter a date. 请输入日期', focus: toInput };
      if (from !== null && to !== null && from >= to)
        return { error: 'From must not be after To. 起始日期不能晚于截止日期', focus: fromInput };
      const account = accountInput.value.trim();
      const model = modelInput.value.trim();
      const minCost = minCostInput.value.trim();
      if (minCostInput.validity && minCostInput.validity.badInput)
        return { error: 'Min cost: enter a number. 请输入数字', focus: minCostInput };
      if (minCost !== '' && !(Number(minCost) >= 0))
        return { error: 'Min cost must be a number ≥ 0. 最低费用须 ≥ 0', focus: minCostInput };
      const size = Number(sizeInput.value.trim() || DEFAULT_PAGE_SIZE);
      if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE)
        return {
          error: 'Rows per page: 1 to ' + MAX_PAGE_SIZE + '. 每页行数 1–' + MAX_PAGE_SIZE,
          focus: sizeInput,
        };
      if (from !== null) p.set('from', from);
      if (to !== null) p.set('to', to);
      if (account !== '') p.set('account', account);
      if (!descendantsInput.checked) p.set('descendants', 'false');
      if (model !== '') p.set('model', model);
      if (outcomeSelect.value !== '') p.set('outcome', outcomeSelect.value);
      if (minCost !== '') p.set('min_cost', minCost);
      return { params: p, size };
    }

    function showError(message) {
      errorEl.textContent = message || '';
    }

    function cellOf(name, content, extra) {
      const label = REQ_COLUMNS.find((c) => c[0] === name)[1];
      return el('td', Object.assign({ 'data-label': label, 'data-field': name }, extra || {}), content);
    }

    function rowOf(r) {
      const outcome = typeof r.outcome === 'string' ? r.outcome : '';
      const accountName =
        r.account_name == null
          ? el('span', { className: 'muted' }, 'deleted 已删除')
          : String(r.account_name);
      const micros = num(r.cost_micros);
      const atCaller = num(r.cost_at_caller_rates);
      return el(
        'tr',
        { 'data-request-id': r.request_id == null ? '' : String(r.request_id) },
        cellOf('time', dateTimeCell(r.created_at ?? r.created), {
          className: 'num nowrap',
          title: r.created_at == null ? null : String(r.created_at),
        }),
        cellOf('account', [
          el('span', { className: 'req-account-name' }, accountName),
          el('span', { className: 'muted small num' }, ' #' + (r.account_id ?? '—')),
        ]),
        cellOf(
          'endpoint',
          el('span', { className: 'mono' }, r.endpoint == null ? '—' : breakable(r.endpoint)),
        ),
        cellOf('model', r.model == null || r.model === '' ? '—' : String(r.model), {
          className: 'wrap-anywhere',
        }),
        cellOf('stream', r.stream === true ? 'Yes 是' : r.stream === false ? 'No 否' : '—'),
        cellOf('prompt_tokens', fmtInt(r.prompt_tokens), { className: 'num' }),
        cellOf('cached_tokens', fmtInt(r.cached_tokens), { className: 'num' }),
        cellOf('completion_tokens', fmtInt(r.completion_tokens), { className: 'num' }),
        cellOf('reasoning_tokens', fmtInt(r.reasoning_tokens), { className: 'num' }),
        cellOf(
          'cost',
          [
            el('span', { className: 'req-cost' }, fmtMoney(r.cost)),
            atCaller === null
              ? null
              : el(
                  'span',
                  {
                    className: 'req-cost-caller muted small',
                    title: 'The same request at this key’s own Rates 按本密钥费率',
                  },
                  'yours 本账户 ' + fmtMoney(atCaller),
                ),
          ],
          {
            className: 'num',
            title:
              micros === null
                ? null
                : 'Exactly $' +
                  (micros / 1e6).toFixed(6) +
                  (num(r.rates) !== null ? ' at Rates ' + r.rates : ''),
          },
        ),
        cellOf('outcome', [
          el('span', { className: 'badge ' + (OUTCOME_BADGE[outcome] || '') }, outcome || '—'),
          r.error_code == null || r.error_code === ''
            ? null
            : el('span', { className: 'req-error-code mono small' }, breakable(r.error_code)),
        ]),
        cellOf('status', r.status == null ? '—' : String(r.status), { className: 'num' }),
        cellOf('latency', fmtMs(r.latency_ms) + ' / ' + fmtMs(r.ttfb_ms), { className: 'num nowrap' }),
      );
    }

    function setBusy(busy) {
      details.setAttribute('aria-busy', busy ? 'true' : 'false');
      applyButton.disabled = busy;
      if (busy) {
        prevButton.disabled = true;
        nextButton.disabled = true;
      }
    }

    async function load() {
      const token = ++view.token;
      const cursor = view.cursors[view.cursors.length - 1];
      const p = new URLSearchParams(view.filters.params);
      p.set('size', String(view.filters.size));
      if (cursor !== null) p.set('cursor', cursor);
      // The total is counted once per filter, on the first page (counting is slower on big logs).
      else p.set('count', 'true');
      const query = p.toString();
      setBusy(true);
      showError('');
      statusEl.textContent = 'Loading… 查询中';
      let res;
      let rows;
      try {
        res = await keyFetch('/x-logs?' + query, key, 'application/json');
        rows = JSON.parse(await res.text());
        if (!Array.isArray(rows)) throw new Error('Unexpected answer from the API (not a list of requests).');
      } catch (err) {
        if (token !== view.token) return;
        setBusy(false);
        prevButton.disabled = view.cursors.length <= 1;
        statusEl.textContent = '';
        showError(
          'Requests unavailable 请求记录不可用: ' + (err && err.message ? err.message : 'unknown error'),
        );
        return;
      }
      if (token !== view.token) return;
      setBusy(false);
      const h = (name) => res.headers.get(name);
      const pageNo = num(h('x-page')) ?? view.cursors.length;
      const perPage = num(h('x-per-page')) ?? view.filters.size;
      if (cursor === null) {
        view.total = num(h('x-total-count'));
        view.totalPages = num(h('x-total-pages'));
      }
      view.nextCursor = h('x-next-cursor') || null;
      // Across origins the browser hides response headers the API does not list in
      // Access-Control-Expose-Headers: without them there is no way to the next page.
      if (h('x-per-page') === null && rows.length >= view.filters.size) {
        showError(
          'The API does not let this page read its paging headers (x-page, x-next-cursor: CORS ' +
            'Access-Control-Expose-Headers), so only the first page can be shown. 接口未开放分页响应头',
        );
      }
      table.setAttribute('data-query', query);
      clear(tbody);
      append(
        tbody,
        rows.length === 0
          ? el(
              'tr',
              { className: 'req-empty' },
              el('td', { colspan: REQ_COLUMNS.length, className: 'muted' }, 'No requests match. 无匹配请求'),
            )
          : rows.map(rowOf),
      );
      addModels(rows.map((r) => r && r.model));
      const first = (pageNo - 1) * perPage + 1;
      pageLabel.setAttribute('data-page', String(pageNo));
      pageLabel.textContent =
        'Page 第 ' + fmtInt(pageNo) + (view.totalPages > 0 ? ' / ' + fmtInt(view.totalPages) : '') + ' 页';
      statusEl.setAttribute('data-rows', String(rows.length));
      statusEl.textContent =
        rows.length === 0
          ? 'No requests. 无请求'
          : 'Rows 行 ' +
            fmtInt(first) +
            '–' +
            fmtInt(first + rows.length - 1) +
            (view.total !== null ? ' of 共 ' + fmtInt(view.total) : '');
      prevButton.disabled = view.cursors.length <= 1;
      nextButton.disabled = view.nextCursor === null;
      view.loaded = true;
    }

    function applyFilters() {
      const f = readFilters();
      if (f.error) {
        showError(f.error);
        f.focus.focus();
        return;
      }
      view.filters = f;
      view.cursors = [null];
      view.total = null;
      view.totalPages = null;
      void load();
    }

    async function downloadCsv() {
      const f = readFilters();
      if (f.error) {
        showError(f.error);
        f.focus.focus();
        return;
      }
      const p = new URLSearchParams(f.params);
      p.set('format', 'csv');
      csvButton.disabled = true;
      csvButton.setAttribute('aria-busy', 'true');
      showError('');
      statusEl.textContent = 'Preparing CSV… 正在导出';
      try {
        const res = await keyFetch('/x-logs?' + p.toString(), key, 'text/csv');
        const blob = await res.blob();
        const url = URL.createObjectURL(blob);
        const a = el('a', {
          href: url,
          download: 'requests-' + ymd(new Date()) + '.csv',
          className: 'visually-hidden',
        });
        document.body.appendChild(a);
        a.click();
        a.remove();
        window.setTimeout(() => URL.revokeObjectURL(url), 60000);
        statusEl.textContent = 'CSV saved 已导出 (' + fmtInt(blob.size) + ' bytes).';
      } catch (err) {
        statusEl.textContent = '';
        showError('CSV export failed 导出失败: ' + (err && err.message ? err.message : 'unknown error'));
      } finally {
        csvButton.disabled = false;
        csvButton.removeAttribute('aria-busy');
      }
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      applyFilters();
    });
    form.addEventListener('reset', () => {
      // After the browser has reset the controls to their defaults.
      window.setTimeout(applyFilters, 0);
    });
    prevButton.addEventListener('click', () => {
      if (view.cursors.length <= 1) return;
      view.cursors.pop();
      void load();
    });
    nextButton.addEventListener('click', () => {
      if (view.nextCursor === null) return;
      view.cursors.push(view.nextCursor);
      void load();
    });
    csvButton.addEventListener('click', () => void downloadCsv());
    details.addEventListener('toggle', () => {
      if (details.open && !view.loaded && view.filters === null) applyFilters();
    });
    return view;
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
    let models = [];
    try {
      const usage = await apiRequest(api.base, 'GET', usagePath(), key);
      if (gen !== generation) return true;
      models = renderChart(section, index, usage);
    } catch (err) {
      if (gen !== generation) return true;
      renderChartError(section, index, err && err.message ? err.message : 'unknown error');
    }
    renderRequestsView(section, index, key, models);
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
