/*
 * ProxyXAI sub-account page (sub.<domain> or /user/ on the gateway). Vanilla JS, no build step.
 * Create / recharge / update / view / delete sub-accounts through /x-users and /x-dna with the parent's
 * key, and, for the root key only, manage the upstream key pool through /x-keys.
 */
(function () {
  'use strict';

  // Shared helpers: common.js, a byte-identical copy in every page folder, loaded before this file.
  const {
    storageGet,
    storageSet,
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
  } = window.PROXYXAI_COMMON;

  /* ---------- sub-account page ---------- */

  const PARENT_KEY_STORAGE = 'parent-api-key-input';
  const FULL_KEY = /^sk-Xvs\w{45}$/;
  const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
  const MONEY_FIELDS = new Set([
    'Balance',
    'CreditUsed',
    'CreditGranted',
    'HardLimit',
    'SoftLimit',
    'amount',
    'balance',
  ]);
  const DATE_FIELDS = new Set(['CreatedAt', 'UpdatedAt', 'granted_at', 'expires_at']);

  const api = resolveApiBase();
  const $ = (id) => document.getElementById(id);
  const keyInput = $('parent-api-key-input');
  const keyVisibility = $('parent-key-visibility');
  const keyStatus = $('parent-key-status');
  const nameInput = $('name-input');
  const emailInput = $('email-input');
  const creditInput = $('credit-input');
  const ratesInput = $('rates-input');
  const daysInput = $('days-input');
  const errorBox = $('error-message');
  const actionStatus = $('action-status');
  const resultSection = $('result-section');
  const resultTitle = $('result-title');
  const result = $('result');
  const actionButtons = [
    'create-button',
    'recharge-button',
    'update-button',
    'view-button',
    'delete-button',
  ].map($);
  const pool = {
    panel: $('key-pool-panel'),
    body: $('key-pool-body'),
    input: $('upstream-key-input'),
    form: $('add-upstream-key-form'),
    refresh: $('refresh-keys-button'),
    status: $('key-pool-status'),
    error: $('key-pool-error'),
  };
  const dialog = $('confirm-dialog');
  let probeGeneration = 0;

  /* ----- formatting ----- */

  function fmtMoney(v) {
    const n = num(v);
    if (n === null) return v == null ? '—' : String(v);
    return fmtUsd(n);
  }

  function fmtNumber(v) {
    const n = num(v);
    if (n === null) return v == null ? '—' : String(v);
    if (Math.abs(n) >= 1e8) return n.toExponential(2);
    return n.toLocaleString('en-US', { maximumFractionDigits: 4 });
  }

  function fmtDate(value, withTime) {
    if (value == null || value === '') return '—';
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    const date = ymd(d);
    return withTime === false ? date : date + ' ' + pad2(d.getHours()) + ':' + pad2(d.getMinutes());
  }

  function statusBadge(status) {
    if (status === true) return el('span', { className: 'badge ok' }, 'Active 启用');
    if (status === false) return el('span', { className: 'badge error' }, 'Disabled 停用');
    return el('span', { className: 'badge' }, status == null ? '—' : String(status));
  }

  function cardsTable(cards, caption) {
    if (!Array.isArray(cards) || cards.length === 0) return el('span', { className: 'muted' }, 'No cards 无');
    return el(
      'table',
      { className: 'cards-table' },
      el('caption', { className: 'visually-hidden' }, caption || 'Credit cards'),
      el(
        'thead',
        null,
        el(
          'tr',
          null,
          el('th', { scope: 'col' }, 'Amount 面额'),
          el('th', { scope: 'col' }, 'Balance 余额'),
          el('th', { scope: 'col' }, 'Granted 发放'),
          el('th', { scope: 'col' }, 'Expires 到期'),
        ),
      ),
      el(
        'tbody',
        null,
        cards.map((c) =>
          el(
            'tr',
            null,
            el('td', { className: 'num' }, fmtMoney(c && c.amount)),
            el('td', { className: 'num' }, fmtMoney(c && c.balance)),
            el('td', { className: 'num' }, fmtDate(c && c.granted_at, false)),
            el('td', { className: 'num' }, fmtDate(c && c.expires_at, false)),
          ),
        ),
      ),
    );
  }

  function formatValue(key, value) {
    // The root account's balance is not metered: the API reports it as null.
    if (value === null && key === 'Balance') return 'Unlimited 无限';
    if (value == null) return el('span', { className: 'muted' }, '—');
    if ((key === 'CreditBalance' || key === 'credit_balance') && Array.isArray(value))
      return cardsTable(value, key);
    if (key === 'Status' && typeof value === 'boolean') return statusBadge(value);
    if (typeof value === 'boolean') return value ? 'Yes 是' : 'No 否';
    if (Array.isArray(value)) {
      if (value.length === 0) return el('span', { className: 'muted' }, '(none) *');
      if (value.every((v) => v === null || typeof v !== 'object')) return value.join(' ');
      return el(
        'ul',
        { className: 'plain-list' },
        value.map((v) => el('li', null, kvTable(v))),
      );
    }
    if (typeof value === 'object') return kvTable(value);
    if (MONEY_FIELDS.has(key)) return el('span', { className: 'num' }, fmtMoney(value));
    if (DATE_FIELDS.has(key)) return el('span', { className: 'num' }, fmtDate(value));
    if (typeof value === 'number') return el('span', { className: 'num' }, fmtNumber(value));
    return String(value);
  }

  /** Key/value table for an API object (never raw JSON). */
  function kvTable(obj, caption, id) {
    if (obj == null || typeof obj !== 'object') return String(obj ?? '—');
    const rows = Object.keys(obj).map((k) =>
      el('tr', null, el('th', { scope: 'row' }, k), el('td', null, formatValue(k, obj[k]))),
    );
    return el(
      'table',
      { className: 'kv-table', id: id || null },
      caption ? el('caption', null, caption) : null,
      el('tbody', null, rows),
    );
  }

  /* ----- messages ----- */

  function showError(message) {
    errorBox.textContent = message;
    actionStatus.textContent = '';
  }

  function clearMessages() {
    errorBox.textContent = '';
    actionStatus.textContent = '';
  }

  /** The server's notices about a change (ignored fields, a SoftLimit lowered with HardLimit). */
  function warningsNotice(data) {
    const warnings = data && Array.isArray(data.Warnings) ? data.Warnings : [];
    if (warnings.length === 0) return null;
    return el(
      'div',
      { className: 'notice warn', id: 'result-warnings', role: 'status' },
      el('strong', null, 'Note 提示: '),
      warnings.length === 1
        ? String(warnings[0])
        : el(
            'ul',
            { className: 'plain-list' },
            warnings.map((w) => el('li', null, String(w))),
          ),
    );
  }

  function showResult(title, ...nodes) {
    clear(result);
    append(result, nodes);
    resultTitle.textContent = title;
    resultSection.hidden = false;
    const top = resultSection.getBoundingClientRect().top;
    if (top > window.innerHeight - 80 || top < 0) resultSection.scrollIntoView({ block: 'start' });
  }

  function hideResult() {
    clear(result);
    resultSection.hidden = true;
  }

  function setBusy(busy) {
    for (const b of actionButtons) b.disabled = busy;
    if (busy) result.setAttribute('aria-busy', 'true');
    else result.removeAttribute('aria-busy');
  }

  /* ----- confirmation dialog ----- */

  function confirmAction(title, message, okLabel) {
    return new Promise((resolve) => {
      if (!dialog || typeof dialog.showModal !== 'function') {
        resolve(window.confirm(message));
        return;
      }
      $('confirm-title').textContent = title;
      $('confirm-message').textContent = message;
      $('confirm-ok-button').textContent = okLabel;
      dialog.returnValue = '';
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
      dialog.showModal();
      $('confirm-cancel-button').focus();
    });
  }

  /* ----- inputs ----- */

  function currentKey() {
    const key = keyInput.value.trim();
    if (!key) {
      showError('Enter your API key first. 请先输入你的密钥');
      keyInput.focus();
      return null;
    }
    if (FULL_KEY.test(key)) storageSet(PARENT_KEY_STORAGE, key);
    return key;
  }

  function randomSuffix(length) {
    const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
    const bytes = new Uint8Array(length);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => alphabet[b % 36]).join('');
  }

  /** The original page's rule: e-mail → local part; drop punctuation, symbols, controls and spaces; pad short or all-digit names. */
  function sanitizeName(raw) {
    let name = String(raw || '').trim();
    const at = name.indexOf('@');
    if (at > 0) name = name.slice(0, at);
    name = name.replace(/[\p{P}\p{S}\p{C}\p{Z}\s]/gu, '');
    if (name.length < 4 || /^\d+$/.test(name)) name += randomSuffix(4);
    return name;
  }

  function targetName() {
    const name = nameInput.value.trim();
    if (!name) {
      showError('Enter the Name (or ID) of the sub-account. 请输入用户名');
      nameInput.focus();
      return null;
    }
    return name;
  }

  function readNumber(inputEl, label, opts) {
    const raw = inputEl.value.trim();
    if (raw === '') return { empty: true };
    const n = Number(raw);
    const bad =
      !Number.isFinite(n) ||
      (opts && opts.integer && !Number.isInteger(n)) ||
      (opts && opts.min != null && n < opts.min) ||
      (opts && opts.max != null && n > opts.max);
    if (bad) {
      showError(label + ': ' + ((opts && opts.message) || 'enter a valid number') + '.');
      inputEl.focus();
      return { error: true };
    }
    return { value: n };
  }

  function listValue(id) {
    return $(id).value.trim().split(/\s+/).filter(Boolean).join(' ');
  }

  /* ----- API calls ----- */

  async function run(label, fn) {
    clearMessages();
    setBusy(true);
    actionStatus.textContent = label + '… 处理中';
    try {
      await fn();
    } catch (err) {
      const status = err && err.status ? ' (HTTP ' + err.status + ')' : '';
      showError(label + ' failed 失败: ' + (err && err.message ? err.message : String(err)) + status);
    } finally {
      setBusy(false);
      if (actionStatus.textContent === label + '… 处理中') actionStatus.textContent = '';
    }
  }

  function userPath(prefix, name) {
    return prefix + '/' + encodeURIComponent(name);
  }

  function sumCards(cards) {
    if (!Array.isArray(cards)) return null;
    return cards.reduce((s, c) => s + (num(c && c.balance) || 0), 0);
  }

  function parentSummary(parent) {
    if (!parent || typeof parent !== 'object') return null;
    const balance = parent.Balance === null ? null : (num(parent.Balance) ?? sumCards(parent.CreditBalance));
    const balanceText =
      parent.Balance === null
        ? ': balance unlimited 无限'
        : balance !== null
          ? ': balance ' + fmtMoney(balance)
          : '';
    return el(
      'details',
      { className: 'result-details', id: 'parent-details' },
      el('summary', { id: 'parent-details-toggle' }, 'Your account 你的账户' + balanceText),
      kvTable(parent, null, 'parent-table'),
    );
  }

  async function createAccount() {
    const key = currentKey();
    if (!key) return;
    let rawName = nameInput.value.trim();
    const email = emailInput.value.trim();
    if (!EMAIL_PATTERN.test(email)) {
      showError('Enter a valid Email. 请输入有效邮箱');
      emailInput.focus();
      return;
    }
    if (!rawName) rawName = email;
    const credit = readNumber(creditInput, 'Credit', {
      min: 0.01,
      message: 'enter the initial credit in USD (min $2)',
    });
    if (credit.error) return;
    if (credit.empty) {
      showError('Credit: enter the initial credit in USD (min $2). 请输入额度');
      creditInput.focus();
      return;
    }
    const rates = readNumber(ratesInput, 'Rates', { min: 0.000001, message: 'enter a positive multiplier' });
    if (rates.error) return;
    const name = sanitizeName(rawName);
    if (name !== nameInput.value.trim()) nameInput.value = name;
    const body = { Name: name, Email: email, CreditGranted: credit.value };
    if (!rates.empty) body.Rates = rates.value;

    await run('Create 创建', async () => {
      const data = await apiRequest(api.base, 'POST', '/x-users', key, body);
      const user = (data && data.User) || {};
      const secret =
        typeof user.SecretKey === 'string' && user.SecretKey.startsWith('sk-') ? user.SecretKey : '';
      const nodes = [
        el(
          'p',
          { className: 'notice ok', id: 'create-summary' },
          'Created 已创建: ' + (user.Name || name) + (user.ID != null ? ' (ID ' + user.ID + ')' : ''),
        ),
      ];
      if (secret) nodes.push(newKeyPanel(secret));
      nodes.push(warningsNotice(data));
      if (user.Updates) nodes.push(kvTable(user.Updates, 'New account 新账户', 'user-table'));
      nodes.push(parentSummary(data && data.Parent));
      showResult('Created 已创建', nodes);
      actionStatus.textContent = 'Sub-account created. 子账号已创建';
      const keyField = $('new-key-value');
      if (keyField) keyField.focus();
      void refreshPoolIfShown();
    });
  }

  function newKeyPanel(secret) {
    const field = el('input', {
      id: 'new-key-value',
      type: 'text',
      readonly: true,
      className: 'mono key-field',
      spellcheck: 'false',
      'aria-describedby': 'new-key-warning',
    });
    field.value = secret;
    field.addEventListener('focus', () => field.select());
    const copyStatus = el('span', {
      id: 'copy-key-status',
      className: 'hint',
      role: 'status',
      'aria-live': 'polite',
    });
    const copyButton = el(
      'button',
      { id: 'copy-key-button', type: 'button', className: 'primary' },
      'Copy 复制',
    );
    copyButton.addEventListener('click', async () => {
      let copied = false;
      try {
        if (navigator.clipboard && window.isSecureContext) {
          await navigator.clipboard.writeText(secret);
          copied = true;
        }
      } catch {
        copied = false;
      }
      if (!copied) {
        field.focus();
        field.select();
        try {
          copied = document.execCommand('copy');
        } catch {
          copied = false;
        }
      }
      copyStatus.textContent = copied
        ? 'Copied 已复制'
        : 'Select the key and copy it manually (Ctrl+C). 请手动复制';
    });
    const dismiss = el('button', { id: 'dismiss-key-button', type: 'button' }, 'I saved it 已保存，隐藏');
    const panel = el(
      'div',
      { className: 'new-key', id: 'new-key-panel' },
      el('h3', null, 'New API key 新密钥'),
      el(
        'p',
        { className: 'notice warn', id: 'new-key-warning' },
        'Copy this key now: it is shown only once and cannot be shown again. 请立即复制保存，此密钥仅显示一次，无法再次查看。',
      ),
      el('label', { for: 'new-key-value' }, 'Secret key 密钥'),
      el('div', { className: 'input-row' }, field, copyButton, dismiss),
      copyStatus,
    );
    dismiss.addEventListener('click', () => {
      field.value = '';
      panel.replaceWith(
        el('p', { className: 'hint', id: 'new-key-hidden' }, 'The key was hidden. 密钥已隐藏'),
      );
    });
    return panel;
  }

  async function rechargeAccount() {
    const key = currentKey();
    if (!key) return;
    const name = targetName();
    if (!name) return;
    const credit = readNumber(creditInput, 'Credit', { message: 'enter the amount in USD' });
    if (credit.error) return;
    if (credit.empty || credit.value === 0) {
      showError('Credit: enter the amount to add (negative to deduct). 请输入充值金额');
      creditInput.focus();
      return;
    }
    const days = readNumber(daysInput, 'Days', { min: 0, max: 365, message: 'enter 0–365' });
    if (days.error) return;
    const body = { CreditGranted: credit.value };
    if (!days.empty) body.Days = days.value;
    if (credit.value < 0) {
      const ok = await confirmAction(
        'Deduct credit 扣减额度',
        'Deduct ' +
          fmtMoney(-credit.value) +
          ' from "' +
          name +
          '"? The amount returns to you as a new credit card; a $0.2 fee applies.',
        'Deduct 扣减',
      );
      if (!ok) {
        actionStatus.textContent = 'Cancelled. 已取消';
        return;
      }
    }
    await run(credit.value < 0 ? 'Deduct 扣减' : 'Recharge 充值', async () => {
      const data = await apiRequest(api.base, 'PUT', userPath('/x-users', name), key, body);
      renderUpdate(data, name, credit.value < 0 ? 'Deducted 已扣减' : 'Recharged 已充值');
    });
  }

  function renderUpdate(data, name, verb) {
    const user = (data && data.User) || {};
    const nodes = [
      el(
        'p',
        { className: 'notice ok', id: 'update-summary' },
        verb + ': ' + (user.Name || name) + (user.ID != null ? ' (ID ' + user.ID + ')' : ''),
      ),
    ];
    nodes.push(warningsNotice(data));
    if (user.Updates) nodes.push(kvTable(user.Updates, 'Sub-account now 子账号当前状态', 'user-table'));
    nodes.push(parentSummary(data && data.Parent));
    showResult(verb, nodes);
    actionStatus.textContent = verb + '.';
  }

  async function updateAccount() {
    const key = currentKey();
    if (!key) return;
    const name = targetName();
    if (!name) return;
    const body = {};
    const rates = readNumber(ratesInput, 'Rates', { min: 0.000001, message: 'enter a positive multiplier' });
    if (rates.error) return;
    if (!rates.empty) body.Rates = rates.value;
    const rpm = readNumber($('rate-limit-input'), 'RateLimit', {
      min: 0,
      integer: true,
      message: 'enter a whole number',
    });
    if (rpm.error) return;
    if (!rpm.empty) body.RateLimit = rpm.value;
    const hard = readNumber($('hard-limit-input'), 'HardLimit', {
      min: 0,
      message: 'enter an amount in USD',
    });
    if (hard.error) return;
    if (!hard.empty) body.HardLimit = hard.value;
    const soft = readNumber($('soft-limit-input'), 'SoftLimit', {
      min: 0,
      message: 'enter an amount in USD',
    });
    if (soft.error) return;
    if (!soft.empty) body.SoftLimit = soft.value;
    const lists = [
      ['AllowModels', 'allow-models-input'],
      ['DenyModels', 'deny-models-input'],
      ['AllowIPs', 'allow-ips-input'],
      ['DenyIPs', 'deny-ips-input'],
    ];
    for (const [field, id] of lists) {
      const v = listValue(id);
      if (v) body[field] = v;
    }
    const status = $('status-select').value;
    if (status === 'true' || status === 'false') body.Status = status === 'true';
    if (Object.keys(body).length === 0) {
      showError(
        'Fill at least one field to update (Rates or a field under "Limits & access"). 请至少填写一项',
      );
      return;
    }
    await run('Update 更新', async () => {
      const data = await apiRequest(api.base, 'PUT', userPath('/x-users', name), key, body);
      renderUpdate(data, name, 'Updated 已更新');
    });
  }

  async function deleteAccount() {
    const key = currentKey();
    if (!key) return;
    const name = targetName();
    if (!name) return;
    const ok = await confirmAction(
      'Delete sub-account 删除子账号',
      'Delete "' +
        name +
        '"? Its remaining balance is refunded to you as a credit card valid 180 days, minus a $0.2 fee. This cannot be undone.',
      'Delete 删除',
    );
    if (!ok) {
      actionStatus.textContent = 'Cancelled. 已取消';
      return;
    }
    await run('Delete 删除', async () => {
      const data = await apiRequest(api.base, 'DELETE', userPath('/x-users', name), key);
      const user = (data && data.User) || {};
      showResult('Deleted 已删除', [
        el(
          'p',
          { className: 'notice ok', id: 'delete-summary' },
          'Deleted 已删除: ' + (user.Name || name) + (user.ID != null ? ' (ID ' + user.ID + ')' : ''),
        ),
        parentSummary(data && data.Parent),
      ]);
      actionStatus.textContent = 'Sub-account deleted. 子账号已删除';
    });
  }

  /* ----- View: descendants as an indented tree table ----- */

  function orderAsTree(users) {
    const byId = new Map();
    for (const u of users) if (u && u.ID != null) byId.set(String(u.ID), u);
    const children = new Map();
    const roots = [];
    for (const u of users) {
      if (!u || typeof u !== 'object') continue;
      const parentKey = u.ParentID != null ? String(u.ParentID) : null;
      if (parentKey !== null && byId.has(parentKey) && parentKey !== String(u.ID)) {
        if (!children.has(parentKey)) children.set(parentKey, []);
        children.get(parentKey).push(u);
      } else roots.push(u);
    }
    const byIdNum = (a, b) => (num(a.ID) ?? 0) - (num(b.ID) ?? 0);
    const out = [];
    const seen = new Set();
    const walk = (u, depth, parentName) => {
      const id = String(u.ID);
      if (seen.has(id)) return;
      seen.add(id);
      out.push({ user: u, depth, parentName });
      const kids = (children.get(id) || []).slice().sort(byIdNum);
      for (const k of kids) walk(k, depth + 1, u.Name);
    };
    for (const r of roots.slice().sort(byIdNum)) walk(r, 0, null);
    return out;
  }

  const TREE_COLUMNS = [
    'Name 用户名',
    'ID',
    'Email 邮箱',
    'Balance 余额',
    'Used 已用',
    'Rates 费率',
    'RPM',
    'Hard / Soft limit',
    'Children 子账号',
    'Requests 请求',
    'Status 状态',
    'Key 密钥',
    'Created 创建',
    'Select 选择',
  ];

  function treeRow(entry) {
    const u = entry.user;
    const id = u.ID != null ? String(u.ID) : '';
    const nameCell = el(
      'td',
      { className: 'tree-name', style: '--depth:' + entry.depth },
      entry.depth > 0 ? el('span', { className: 'tree-branch', 'aria-hidden': 'true' }, '└ ') : null,
      el('strong', null, u.Name ?? '—'),
      u.Alias && u.Alias !== u.Name ? el('span', { className: 'muted' }, ' (' + u.Alias + ')') : null,
      entry.parentName
        ? el('span', { className: 'visually-hidden' }, ', child of ' + entry.parentName)
        : null,
      u.Level != null ? el('span', { className: 'muted small' }, ' · L' + u.Level) : null,
    );
    const cards = Array.isArray(u.CreditBalance) ? u.CreditBalance : [];
    const balanceCell = el(
      'td',
      { className: 'num' },
      fmtMoney(u.Balance ?? sumCards(cards)),
      cards.length > 0
        ? el(
            'details',
            { className: 'cards-details', id: 'cards-' + id },
            el(
              'summary',
              { id: 'cards-toggle-' + id },
              cards.length + (cards.length === 1 ? ' card' : ' cards'),
            ),
            cardsTable(cards, 'Credit cards of ' + (u.Name || id)),
          )
        : null,
    );
    const selectButton = el(
      'button',
      {
        type: 'button',
        className: 'small',
        id: 'select-user-' + id,
        'aria-label': 'Select ' + (u.Name || id),
      },
      'Use 选择',
    );
    selectButton.addEventListener('click', () => {
      nameInput.value = u.Name || id;
      if (u.Email && !emailInput.value) emailInput.value = u.Email;
      nameInput.focus();
      actionStatus.textContent = 'Selected ' + (u.Name || id) + '. 已选择';
    });
    return el(
      'tr',
      { id: 'dna-row-' + id, 'data-depth': entry.depth, 'data-name': u.Name || '' },
      nameCell,
      el('td', { className: 'num' }, id || '—'),
      el('td', { className: 'wrap-anywhere' }, u.Email ?? '—'),
      balanceCell,
      el('td', { className: 'num' }, fmtMoney(u.CreditUsed)),
      el('td', { className: 'num' }, fmtNumber(u.Rates)),
      el('td', { className: 'num' }, fmtNumber(u.RateLimit)),
      el(
        'td',
        { className: 'num' },
        fmtMoney(u.HardLimit),
        el('br'),
        el('span', { className: 'muted' }, fmtMoney(u.SoftLimit)),
      ),
      el(
        'td',
        { className: 'num', title: u.ChildLimit != null ? 'ChildLimit ' + fmtNumber(u.ChildLimit) : null },
        fmtNumber(u.Child),
      ),
      el('td', { className: 'num' }, fmtNumber(u.Requests)),
      el('td', null, statusBadge(u.Status)),
      el(
        'td',
        { className: 'mono', title: u.PartialKey ? '…' + u.PartialKey : null },
        u.PartialKey ? '…' + String(u.PartialKey).slice(-6) : '***',
      ),
      el('td', { className: 'num', title: fmtDate(u.CreatedAt) }, fmtDate(u.CreatedAt, false)),
      el('td', null, selectButton),
    );
  }

  function treeTable(users) {
    const ordered = orderAsTree(users);
    return el(
      'div',
      { className: 'table-wrap' },
      el(
        'table',
        { id: 'dna-table', className: 'dna-table' },
        el('caption', { className: 'visually-hidden' }, 'Sub-accounts, children indented below their parent'),
        el(
          'thead',
          null,
          el(
            'tr',
            null,
            TREE_COLUMNS.map((c) => el('th', { scope: 'col' }, c)),
          ),
        ),
        el('tbody', { id: 'dna-body' }, ordered.map(treeRow)),
      ),
    );
  }

  async function viewAccounts() {
    const key = currentKey();
    if (!key) return;
    const name = nameInput.value.trim();
    await run('View 查看', async () => {
      const data = await apiRequest(api.base, 'GET', name ? userPath('/x-dna', name) : '/x-dna', key);
      // A single lookup answers a one-element array (as the original's); older gateways an object.
      const users = Array.isArray(data) ? data : data && typeof data === 'object' ? [data] : [];
      if (users.length === 0) {
        showResult(
          'Sub-accounts 子账号',
          el('p', { className: 'notice', id: 'dna-empty' }, 'No sub-accounts yet. 暂无子账号'),
        );
      } else {
        showResult(
          name ? 'Sub-account 子账号: ' + name : 'All sub-accounts 全部子账号',
          el(
            'p',
            { className: 'hint', id: 'dna-count' },
            users.length + (users.length === 1 ? ' account' : ' accounts') + ' 个账号',
          ),
          treeTable(users),
        );
      }
      actionStatus.textContent = 'Loaded ' + users.length + ' 已加载.';
    });
  }

  /* ----- upstream key pool (root only) ----- */

  function poolStatusBadge(status) {
    const cls = { active: 'ok', cooling: 'warn', parked: 'warn', disabled: 'error' }[status] || '';
    return el('span', { className: 'badge ' + cls }, status || '—');
  }

  function poolRow(k, key) {
    const id = String(k.ID);
    const buttons = [];
    if (k.Status !== 'active') {
      buttons.push(
        el(
          'button',
          { type: 'button', className: 'small', id: 'key-enable-' + id, 'aria-label': 'Enable key ' + id },
          'Enable 启用',
        ),
      );
    }
    if (k.Status !== 'disabled') {
      buttons.push(
        el(
          'button',
          { type: 'button', className: 'small', id: 'key-disable-' + id, 'aria-label': 'Disable key ' + id },
          'Disable 停用',
        ),
      );
    }
    buttons.push(
      el(
        'button',
        {
          type: 'button',
          className: 'small danger',
          id: 'key-delete-' + id,
          'aria-label': 'Delete key ' + id,
        },
        'Delete 删除',
      ),
    );
    for (const b of buttons) {
      b.addEventListener('click', () => {
        if (b.id.startsWith('key-delete-')) void deleteUpstreamKey(k, key);
        else void setUpstreamKeyStatus(k, key, b.id.startsWith('key-enable-'));
      });
    }
    const reason = [k.Reason, k.LastError].filter((v) => v != null && v !== '').join(' — ');
    return el(
      'tr',
      { id: 'key-row-' + id, 'data-status': k.Status || '' },
      el('td', { className: 'num' }, id),
      el('td', { className: 'mono' }, k.Key ?? '—'),
      el('td', null, poolStatusBadge(k.Status)),
      el('td', { className: 'wrap-anywhere small' }, reason || '—'),
      el('td', { className: 'num' }, fmtNumber(k.Requests)),
      el('td', { className: 'num' }, fmtNumber(k.Failures)),
      el('td', { className: 'num date' }, fmtDate(k.CreatedAt)),
      el('td', { className: 'num date' }, fmtDate(k.UpdatedAt)),
      el('td', null, el('div', { className: 'row-actions' }, buttons)),
    );
  }

  function renderPool(list, key) {
    clear(pool.body);
    const keys = Array.isArray(list) ? list : [];
    if (keys.length === 0) {
      pool.body.appendChild(
        el(
          'tr',
          { id: 'key-pool-empty' },
          el('td', { colspan: 9, className: 'muted' }, 'No upstream keys yet: add one above. 暂无上游密钥'),
        ),
      );
    } else {
      for (const k of keys) pool.body.appendChild(poolRow(k, key));
    }
    const counts = {};
    for (const k of keys) counts[k.Status] = (counts[k.Status] || 0) + 1;
    pool.status.textContent =
      keys.length +
      ' keys 个密钥' +
      (keys.length
        ? ': ' +
          Object.entries(counts)
            .map(([s, n]) => n + ' ' + s)
            .join(', ')
        : '');
  }

  function hidePool() {
    pool.panel.hidden = true;
    clear(pool.body);
  }

  async function probeRoot() {
    const key = keyInput.value.trim();
    const gen = ++probeGeneration;
    if (!key) {
      hidePool();
      keyStatus.textContent = '';
      return;
    }
    try {
      const list = await apiRequest(api.base, 'GET', '/x-keys', key);
      if (gen !== probeGeneration) return;
      pool.error.textContent = '';
      renderPool(list, key);
      pool.panel.hidden = false;
      keyStatus.textContent = 'Root key: the upstream key pool is shown below. 根密钥';
    } catch (err) {
      if (gen !== probeGeneration) return;
      hidePool();
      if (err && err.status === 401) keyStatus.textContent = 'Key not accepted 密钥无效: ' + err.message;
      else if (err && err.status === 0) keyStatus.textContent = err.message;
      else keyStatus.textContent = '';
    }
  }

  async function refreshPool() {
    const key = keyInput.value.trim();
    if (!key) return;
    const list = await apiRequest(api.base, 'GET', '/x-keys', key);
    renderPool(list, key);
  }

  async function refreshPoolIfShown() {
    if (pool.panel.hidden) return;
    try {
      await refreshPool();
    } catch {
      /* the next explicit action shows the error */
    }
  }

  async function poolAction(label, fn) {
    pool.error.textContent = '';
    pool.status.textContent = label + '… 处理中';
    try {
      await fn();
    } catch (err) {
      pool.status.textContent = '';
      pool.error.textContent =
        label +
        ' failed 失败: ' +
        (err && err.message ? err.message : String(err)) +
        (err && err.status ? ' (HTTP ' + err.status + ')' : '');
    }
  }

  async function addUpstreamKey(event) {
    if (event) event.preventDefault();
    const key = currentKey();
    if (!key) return;
    const secret = pool.input.value.trim();
    if (!secret || /\s/.test(secret)) {
      pool.error.textContent = 'Paste one upstream key (no spaces). 请输入一个上游密钥';
      pool.input.focus();
      return;
    }
    await poolAction('Add key 添加', async () => {
      await apiRequest(api.base, 'POST', '/x-keys', key, { SecretKey: secret });
      pool.input.value = '';
      await refreshPool();
      pool.status.textContent = 'Key added and in use. 已添加 — ' + pool.status.textContent;
    });
  }

  async function setUpstreamKeyStatus(k, key, enable) {
    await poolAction(enable ? 'Enable 启用' : 'Disable 停用', async () => {
      await apiRequest(api.base, 'PUT', '/x-keys/' + encodeURIComponent(String(k.ID)), key, {
        Status: enable,
      });
      await refreshPool();
    });
  }

  async function deleteUpstreamKey(k, key) {
    const ok = await confirmAction(
      'Delete upstream key 删除上游密钥',
      'Delete upstream key ' + (k.Key || k.ID) + ' (ID ' + k.ID + ') from the pool? This cannot be undone.',
      'Delete 删除',
    );
    if (!ok) return;
    await poolAction('Delete key 删除', async () => {
      await apiRequest(api.base, 'DELETE', '/x-keys/' + encodeURIComponent(String(k.ID)), key);
      await refreshPool();
    });
  }

  /* ----- wiring ----- */

  $('account-form').addEventListener('submit', (event) => event.preventDefault());
  // Enter in the key field already fires 'change' (which probes the key); the form only exists so that
  // browsers see the password field inside a form.
  $('parent-key-form').addEventListener('submit', (event) => event.preventDefault());
  $('create-button').addEventListener('click', () => void createAccount());
  $('recharge-button').addEventListener('click', () => void rechargeAccount());
  $('update-button').addEventListener('click', () => void updateAccount());
  $('view-button').addEventListener('click', () => void viewAccounts());
  $('delete-button').addEventListener('click', () => void deleteAccount());
  pool.form.addEventListener('submit', (event) => void addUpstreamKey(event));
  pool.refresh.addEventListener('click', () => void poolAction('Refresh 刷新', refreshPool));

  keyVisibility.addEventListener('click', () => {
    const show = keyInput.type === 'password';
    keyInput.type = show ? 'text' : 'password';
    keyVisibility.setAttribute('aria-pressed', String(show));
    keyVisibility.textContent = show ? 'Hide 隐藏' : 'Show 显示';
  });
  keyInput.addEventListener('change', () => {
    const key = keyInput.value.trim();
    if (FULL_KEY.test(key)) storageSet(PARENT_KEY_STORAGE, key);
    hideResult();
    void probeRoot();
  });

  fixSiteLinks('user');
  setupApiSettings(api, () => void probeRoot());

  const rememberedKey = storageGet(PARENT_KEY_STORAGE);
  if (rememberedKey && FULL_KEY.test(rememberedKey)) {
    keyInput.value = rememberedKey;
    void probeRoot();
  }
})();
