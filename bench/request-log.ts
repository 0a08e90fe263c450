/**
 * The request log at scale (`npm run bench:log`): query times of GET /x-logs's reads over a store
 * of LOG_ROWS usage rows (default 10,000,000) and the gateway's memory while it exports a million
 * of them as CSV.
 *
 * 1. A gateway (`node dist/main.js`) starts on a fresh DATA_DIR and stops: the store exists,
 *    migrated, with its root account.
 * 2. 1,000 sub-accounts (200 resellers with 4 children each) and LOG_ROWS usage rows over 60 days
 *    are inserted straight into SQLite (one account holds 20 % of the rows; 1 % of rows refused,
 *    0.01 % cancelled batches).
 * 3. Each kind of read runs through the gateway's own code (src/logs/log-page.ts) on that store:
 *    the first run (cold) and the median of the next five.
 * 4. The gateway starts again and a million rows are exported as CSV over HTTP while its RSS is
 *    sampled every 50 ms.
 * Results print as a Markdown table and go to bench/results/<date>-request-log.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { foldKey } from '../src/accounts/account-rules.js';
import Database from '../src/store/sqlite/driver.js';
import { openStore } from '../src/store/store.js';
import { countLog, readLogPage } from '../src/logs/log-page.js';
import type { LogFilter, LogKey } from '../src/logs/log-filter.js';
import { REPO_ROOT, ROOT_KEY, startGateway, stopGateway } from './lib/gateway.js';
import { installCleanup, memInfo, sleep, tempDir } from './lib/procs.js';

const ROWS = Number(process.env['LOG_ROWS'] ?? 10_000_000);
const EXPORT_ROWS = Math.min(1_000_000, ROWS);
const DAY = 86_400_000;
const MODELS = ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1', 'o4-mini', 'text-embedding-3-small'];

async function main(): Promise<void> {
  installCleanup();
  const work = tempDir('proxyxai-log-bench-');
  const dataDir = join(work, 'data');
  mkdirSync(dataDir);
  const logDir = join(work, 'logs');
  mkdirSync(logDir);
  const gwOpts = { name: 'gateway', dataDir, mockUrl: 'http://127.0.0.1:9', cpu: undefined, logDir };
  await stopGateway(await startGateway(gwOpts));

  const t0 = performance.now();
  const { accounts, heavy, reseller, resellerTree, end } = fill(join(dataDir, 'proxyxai.db'));
  const fillSeconds = (performance.now() - t0) / 1000;
  process.stdout.write(`filled ${ROWS} rows in ${fillSeconds.toFixed(0)} s\n`);

  const store = await openStore({ kind: 'sqlite', dataDir }, pino({ level: 'silent' }));
  const all = { kind: 'all' } as const;
  const base: LogFilter = {
    accounts: all,
    from: undefined,
    to: undefined,
    model: undefined,
    outcomes: undefined,
    minCost: undefined,
  };
  // A cursor half way down the log (page ~50,000 of 100 rows), found by time.
  const middle: LogKey = { at: end - 30 * DAY, id: '~' };
  const cases: Array<[string, LogFilter, LogKey | undefined]> = [
    ['root, page 1 (100 rows)', base, undefined],
    ['root, a page half way down (keyset cursor)', base, middle],
    ['one account (20 % of rows), page 1', { ...base, accounts: { kind: 'some', ids: [heavy] } }, undefined],
    [
      'one account (20 % of rows), half way down',
      { ...base, accounts: { kind: 'some', ids: [heavy] } },
      middle,
    ],
    [
      'one small account (~0.08 %), page 1',
      { ...base, accounts: { kind: 'some', ids: [reseller] } },
      undefined,
    ],
    [
      'a reseller and its 4 children, page 1',
      { ...base, accounts: { kind: 'some', ids: resellerTree } },
      undefined,
    ],
    [
      '100 resellers and their children (500 accounts), page 1',
      { ...base, accounts: { kind: 'some', ids: accounts.slice(0, 500) } },
      undefined,
    ],
    ['root, model = o4-mini', { ...base, model: 'o4-mini' }, undefined],
    ['root, outcome = refused (1 %)', { ...base, outcomes: ['refused'] }, undefined],
    ['root, outcome = cancelled (0.01 %): one bounded call', { ...base, outcomes: ['cancelled'] }, undefined],
    ['root, min cost $0.009 (10 %)', { ...base, minCost: 9_000 }, undefined],
    ['root, one day (from/to)', { ...base, from: end - 10 * DAY, to: end - 9 * DAY }, undefined],
  ];
  const results: Array<{ case: string; rows: number; more: boolean; coldMs: number; medianMs: number }> = [];
  for (const [name, filter, after] of cases) {
    const times: number[] = [];
    let rows = 0;
    let more = false;
    for (let i = 0; i < 6; i++) {
      const s = performance.now();
      const page = await readLogPage(store.db, filter, 100, after);
      times.push(performance.now() - s);
      rows = page.rows.length;
      more = page.next !== undefined;
    }
    const warm = times.slice(1).sort((a, b) => a - b);
    results.push({ case: name, rows, more, coldMs: times[0]!, medianMs: warm[2]! });
  }
  const countTimes: Array<{ case: string; count: number; ms: number }> = [];
  for (const [name, filter] of [
    ['count, root, everything', base],
    ['count, one account (20 %)', { ...base, accounts: { kind: 'some', ids: [heavy] } }],
    ['count, root, one day', { ...base, from: end - 10 * DAY, to: end - 9 * DAY }],
  ] as const) {
    const s = performance.now();
    const count = await countLog(store.db, filter);
    countTimes.push({ case: name, count, ms: performance.now() - s });
  }
  await store.close();

  // The export, through the gateway, while its memory is sampled.
  const gw = await startGateway(gwOpts);
  const before = memInfo(gw.proc.pid).rssKb;
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, memInfo(gw.proc.pid).rssKb);
  }, 50);
  const from = end - Math.ceil((EXPORT_ROWS / ROWS) * 60 * DAY);
  const s = performance.now();
  const res = await fetch(`${gw.url}/x-logs?format=csv&from=${from}&to=${end + 1}`, {
    headers: { authorization: `Bearer ${ROOT_KEY}` },
  });
  let bytes = 0;
  let lines = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += chunk.length;
    for (const b of chunk) if (b === 10) lines++;
  }
  const exportSeconds = (performance.now() - s) / 1000;
  clearInterval(sampler);
  await sleep(100);
  await stopGateway(gw);

  const out = {
    date: new Date().toISOString(),
    rows: ROWS,
    fillSeconds,
    reads: results,
    counts: countTimes,
    export: {
      rows: lines - 1,
      megabytes: bytes / 1e6,
      seconds: exportSeconds,
      rssBeforeMb: before / 1024,
      rssPeakMb: peak / 1024,
    },
  };
  const dir = join(REPO_ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${out.date.slice(0, 10)}-request-log.json`), JSON.stringify(out, null, 2) + '\n');
  let md = `\n| Read (${ROWS.toLocaleString('en')} rows, embedded SQLite) | rows | more | first run | median of 5 |\n|---|---:|---|---:|---:|\n`;
  for (const r of results)
    md += `| ${r.case} | ${r.rows} | ${r.more ? 'yes' : 'no'} | ${r.coldMs.toFixed(1)} ms | ${r.medianMs.toFixed(1)} ms |\n`;
  for (const c of countTimes) md += `| ${c.case} | ${c.count} | | ${c.ms.toFixed(0)} ms | |\n`;
  md += `\nCSV export of ${(lines - 1).toLocaleString('en')} rows (${(bytes / 1e6).toFixed(0)} MB) in ${exportSeconds.toFixed(1)} s; gateway RSS ${(before / 1024).toFixed(0)} MB before, peak ${(peak / 1024).toFixed(0)} MB during.\n`;
  process.stdout.write(md);
}

/** Accounts and usage rows straight into the file (the gateway is stopped). */
function fill(file: string): {
  accounts: number[];
  heavy: number;
  reseller: number;
  resellerTree: number[];
  end: number;
} {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const root = db.prepare('select * from accounts where is_root = 1').get() as Record<string, unknown>;
  const cols = Object.keys(root).filter((c) => c !== 'id');
  const insertAccount = db.prepare(
    `insert into accounts (${cols.join(', ')}) values (${cols.map((c) => `@${c}`).join(', ')})`,
  );
  const accounts: number[] = [];
  const resellers: number[] = [];
  db.transaction(() => {
    for (let r = 0; r < 200; r++) {
      const parent = Number(
        insertAccount.run({
          ...root,
          name: `reseller${r}`,
          email: `reseller${r}@example.com`,
          name_key: foldKey(`reseller${r}`),
          email_key: foldKey(`reseller${r}@example.com`),
          key_hash: `hash-r${r}`,
          partial_key: 'sk-…',
          is_root: 0,
          level: 1,
          parent_id: root['id'],
        }).lastInsertRowid,
      );
      resellers.push(parent);
      accounts.push(parent);
      for (let c = 0; c < 4; c++) {
        accounts.push(
          Number(
            insertAccount.run({
              ...root,
              name: `r${r}child${c}`,
              email: `r${r}child${c}@example.com`,
              name_key: foldKey(`r${r}child${c}`),
              email_key: foldKey(`r${r}child${c}@example.com`),
              key_hash: `hash-r${r}c${c}`,
              partial_key: 'sk-…',
              is_root: 0,
              level: 2,
              parent_id: parent,
            }).lastInsertRowid,
          ),
        );
      }
    }
  })();
  const heavy = accounts[1]!;
  const reseller = resellers[7]!;
  const resellerTree = accounts.slice(accounts.indexOf(reseller), accounts.indexOf(reseller) + 5);
  const end = Date.now();
  const start = end - 60 * DAY;
  const step = (60 * DAY) / ROWS;
  const insert = db.prepare(`insert into usage_records (request_id, account_id, model, path, day,
    prompt_tokens, cached_tokens, completion_tokens, cost, status, outcome, attempts, usage_source, created_at,
    stream, reasoning_tokens, images, audio_ms, characters, rates, latency_ms, ttfb_ms, client_ip, error_code)
    values (?, ?, ?, '/v1/chat/completions', ?, ?, 0, ?, ?, ?, ?, 1, 'upstream', ?, ?, 0, 0, 0, 0, 1000000, ?, ?, '203.0.113.7', ?)`);
  let seed = 42;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const CHUNK = 100_000;
  for (let i = 0; i < ROWS; i += CHUNK) {
    db.transaction(() => {
      for (let j = i; j < Math.min(ROWS, i + CHUNK); j++) {
        const at = Math.floor(start + j * step);
        const r = rand();
        const account = r < 0.2 ? heavy : accounts[Math.floor(rand() * accounts.length)]!;
        const o = rand();
        const outcome =
          o < 0.0001 ? 'cancelled' : o < 0.01 ? 'refused' : o < 0.02 ? 'upstream-error' : 'completed';
        const cost = outcome === 'completed' ? Math.floor(rand() * 10_000) : 0;
        insert.run(
          `req_${at.toString(36)}${String(j).padStart(8, '0')}`,
          account,
          MODELS[j % MODELS.length]!,
          new Date(at).toISOString().slice(0, 10),
          Math.floor(rand() * 2000),
          Math.floor(rand() * 500),
          cost,
          outcome === 'refused' ? 429 : outcome === 'upstream-error' ? 502 : 200,
          outcome,
          at,
          j % 3 === 0 ? 1 : 0,
          Math.floor(rand() * 3000),
          Math.floor(rand() * 300),
          outcome === 'refused' ? 'rate_limit_exceeded' : null,
        );
      }
    })();
  }
  db.close();
  return { accounts, heavy, reseller, resellerTree, end };
}

await main();
