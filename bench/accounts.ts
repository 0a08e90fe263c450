/**
 * A million sub-accounts (`npm run bench:accounts`; issue 15, point 4): what the gateway costs with
 * ACCOUNTS sub-accounts in its embedded store (default 1,000,000) against 100.
 *
 * 1. Two stores, `small` (100 sub-accounts) and `large` (ACCOUNTS): the benchmark's funded
 *    sub-account made through POST /x-users, the rest filler rows inserted straight into the store
 *    (random key hashes: they never authenticate). The embedded SQLite store by default;
 *    `STORE=shared`: PostgreSQL + Redis (bench/lib/accounts-store.ts).
 * 2. Each gateway starts (`npm start`'s flags, pinned like in `npm run bench`): the time from spawn
 *    to an answering /healthz (it listens once the store is loaded), its RSS and V8 heap then.
 * 3. JSON load at 64 connections with the funded sub-account's key, ROUNDS rounds of DURATION s,
 *    `small` and `large` back to back (order alternating): CPU per request of each, paired.
 * 4. Two floods of FLOOD requests with wrong keys, 64 at a time: every key new, then 200 keys
 *    tried again and again. Refusals per second, the gateway's CPU per refusal, and the store
 *    reads each flood caused (an unknown key is read once, then remembered).
 *
 * The targets of point 4 are printed beside the figures: ready in ≤ 10 s with RSS ≤ 250 MB, CPU per
 * request with `large` ≤ 1.1× `small`, at most one store read per distinct wrong key. Results go to bench/results/<date>-accounts.json.
 */
import { startMock } from './lib/servers.js';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CPU_PROXY, log } from './lib/context.js';
import {
  createSubAccount,
  heapStats,
  metricValue,
  REPO_ROOT,
  startGateway,
  stopGateway,
  storedCounts,
  type Gateway,
} from './lib/gateway.js';
import { openBenchStore, type BenchStore, type StoreKind } from './lib/accounts-store.js';
import { JSON_BODY, jsonLoad, type Target } from './lib/load.js';
import { cpuMicros, installCleanup, memInfo, stopProc, tempDir } from './lib/procs.js';
import { median, round } from './lib/stats.js';

const ACCOUNTS = Number(process.env['ACCOUNTS'] ?? 1_000_000);
const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const DURATION = Number(process.env['DURATION'] ?? 8);
const FLOOD = Number(process.env['FLOOD'] ?? 20_000);
/** Distinct keys of the second flood, each tried many times. */
const REPEATED_KEYS = 200;
/** `sqlite` (the embedded store) or `shared` (PostgreSQL + Redis). */
const STORE: StoreKind = process.env['STORE'] === 'shared' ? 'shared' : 'sqlite';

interface Sized {
  readonly label: string;
  readonly store: BenchStore;
  readonly accounts: number;
  readonly fillS: number;
  readonly readyS: number;
  readonly rssKb: number;
  readonly heapUsedMB: number;
  readonly gw: Gateway;
  readonly target: Target;
  readonly cpuUsPerReq: number[];
  readonly rps: number[];
  floods: Flood[];
}

async function setUp(label: string, accounts: number, mockUrl: string, logDir: string): Promise<Sized> {
  const dataDir = tempDir(`proxyxai-accounts-${label}-`);
  const store = await openBenchStore(STORE, dataDir);
  const base = { dataDir, mockUrl, cpu: CPU_PROXY, logDir, env: store.env };
  const setup = await startGateway({ ...base, name: `gateway-${label}-setup` });
  const sub = await createSubAccount(setup, `bench${label}`);
  await stopGateway(setup);
  const t0 = performance.now();
  await store.fill(accounts - 1);
  const fillS = (performance.now() - t0) / 1000;
  const stored = STORE === 'sqlite' ? storedCounts(dataDir).accounts - 1 : await store.count();
  const t1 = performance.now();
  const gw = await startGateway({ ...base, name: `gateway-${label}` });
  const readyS = (performance.now() - t1) / 1000;
  const rssKb = memInfo(gw.proc.pid).rssKb;
  const heap = await heapStats(gw);
  log(
    `${label}: ${stored.toLocaleString('en-US')} sub-accounts (filled in ${round(fillS, 1)} s), ready in ` +
      `${round(readyS, 2)} s, RSS ${round(rssKb / 1024, 1)} MB, heap used ${round(heap.heapUsedMB, 1)} MB`,
  );
  return {
    label,
    store,
    accounts: stored,
    fillS,
    readyS,
    rssKb,
    heapUsedMB: heap.heapUsedMB,
    gw,
    target: { name: label, url: gw.url, key: sub.key, pid: gw.proc.pid },
    cpuUsPerReq: [],
    rps: [],
    floods: [],
  };
}

/**
 * FLOOD chat requests with wrong keys, 64 at a time: the refusals per second, their CPU, and the
 * store reads they caused. `distinct` keys are cycled: FLOOD of them (every key new: one store
 * read each) or a few hundred (repeated: only the first try of each may read the store).
 */
async function flood(s: Sized, distinct: number): Promise<Flood> {
  const pid = s.gw.proc.pid;
  const keys = Array.from(
    { length: distinct },
    () => `sk-Xvs${randomBytes(33).toString('base64url').slice(0, 45)}`,
  );
  const statuses: Record<string, number> = {};
  let next = 0;
  const reads0 = await metricValue(s.gw, 'proxyxai_account_store_reads_total');
  const cpu0 = cpuMicros(pid);
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < FLOOD) {
      const key = keys[next++ % distinct]!;
      const res = await fetch(`${s.gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON_BODY,
      });
      await res.arrayBuffer();
      statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const cpuUsPerRefusal = (cpuMicros(pid) - cpu0) / FLOOD;
  const storeReads = (await metricValue(s.gw, 'proxyxai_account_store_reads_total')) - reads0;
  return { distinct, perSecond: FLOOD / seconds, cpuUsPerRefusal, storeReads, statuses };
}

interface Flood {
  readonly distinct: number;
  readonly perSecond: number;
  readonly cpuUsPerRefusal: number;
  /** Store reads the flood caused (proxyxai_account_store_reads_total). */
  readonly storeReads: number;
  readonly statuses: Record<string, number>;
}

async function main(): Promise<void> {
  installCleanup();
  const work = tempDir('proxyxai-accounts-bench-');
  const logDir = join(work, 'logs');
  mkdirSync(logDir);
  const { proc: mock, url: mockUrl } = await startMock(work, logDir);

  const small = await setUp('small', 100, mockUrl, logDir);
  const large = await setUp('large', ACCOUNTS, mockUrl, logDir);
  for (const s of [small, large]) await jsonLoad(s.target, 64, 3);
  const pairs: number[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const order = r % 2 === 1 ? [small, large] : [large, small];
    for (const s of order) {
      const j = await jsonLoad(s.target, 64, DURATION);
      s.cpuUsPerReq.push(j.cpuUsPerReq);
      s.rps.push(j.rps);
      log(`round ${r} ${s.label}: ${round(j.rps, 0)} req/s, ${round(j.cpuUsPerReq, 1)} µs CPU/req`);
    }
    pairs.push((large.cpuUsPerReq[r - 1] ?? Number.NaN) / (small.cpuUsPerReq[r - 1] ?? Number.NaN));
  }
  for (const s of [small, large]) {
    for (const distinct of [FLOOD, REPEATED_KEYS]) {
      const f = await flood(s, distinct);
      s.floods.push(f);
      log(
        `${s.label} flood of ${FLOOD} requests over ${distinct} wrong keys: ${round(f.perSecond, 0)} refusals/s, ` +
          `${round(f.cpuUsPerRefusal, 1)} µs CPU each, ${f.storeReads} store reads, statuses ${JSON.stringify(f.statuses)}`,
      );
    }
  }
  const afterKb = memInfo(large.gw.proc.pid).rssKb;
  for (const s of [small, large]) {
    await stopGateway(s.gw);
    await s.store.close();
  }
  await stopProc(mock);

  const cpuRatio = median(pairs);
  const rows = [small, large].map((s) => ({
    label: s.label,
    accounts: s.accounts,
    fillS: round(s.fillS, 1),
    readyS: round(s.readyS, 2),
    rssMB: round(s.rssKb / 1024, 1),
    heapUsedMB: round(s.heapUsedMB, 1),
    rps: round(median(s.rps), 0),
    cpuUsPerReq: s.cpuUsPerReq.map((x) => round(x, 1)),
    floods: s.floods,
  }));
  const targets = {
    readyS: { goal: '≤ 10', measured: round(large.readyS, 2), pass: large.readyS <= 10 },
    rssMB: { goal: '≤ 250', measured: round(large.rssKb / 1024, 1), pass: large.rssKb / 1024 <= 250 },
    repeatedKeyReads: {
      goal: `≤ ${REPEATED_KEYS} (one per distinct key)`,
      measured: large.floods[1]?.storeReads ?? Number.NaN,
      pass: (large.floods[1]?.storeReads ?? Number.POSITIVE_INFINITY) <= REPEATED_KEYS,
    },
    cpuRatio: {
      goal: '≤ 1.1',
      measured: round(cpuRatio, 2),
      perRound: pairs.map((p) => round(p, 2)),
      pass: cpuRatio <= 1.1,
    },
  };
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    store: STORE,
    accounts: ACCOUNTS,
    rounds: ROUNDS,
    durationS: DURATION,
    flood: FLOOD,
    rows,
    largeRssAfterLoadMB: round(afterKb / 1024, 1),
    targets,
  };
  const file = join(
    REPO_ROOT,
    'bench/results',
    `${new Date().toISOString().slice(0, 10)}-accounts${STORE === 'sqlite' ? '' : `-${STORE}`}.json`,
  );
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(
    [
      '',
      '| Store | Sub-accounts | Ready (s) | RSS after start (MB) | Heap used (MB) | Requests/s | CPU µs/request (each round) |',
      '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
      ...rows.map(
        (r) =>
          `| ${r.label} | ${r.accounts.toLocaleString('en-US')} | ${r.readyS} | ${r.rssMB} | ${r.heapUsedMB} | ${r.rps} | ` +
          `${r.cpuUsPerReq.join(', ')} |`,
      ),
      '',
      '| Store | Wrong keys (distinct) | Refusals/s | CPU µs/refusal | Store reads |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...rows.flatMap((r) =>
        r.floods.map(
          (f) =>
            `| ${r.label} | ${f.distinct.toLocaleString('en-US')} | ${round(f.perSecond, 0)} | ${round(f.cpuUsPerRefusal, 1)} | ${f.storeReads} |`,
        ),
      ),
      '',
      `Targets (issue 15, point 4): ready ${targets.readyS.measured} s (${targets.readyS.goal}) ${targets.readyS.pass ? 'PASS' : 'FAIL'}; ` +
        `RSS ${targets.rssMB.measured} MB (${targets.rssMB.goal}) ${targets.rssMB.pass ? 'PASS' : 'FAIL'}; ` +
        `CPU per request large/small ${targets.cpuRatio.measured}× (${targets.cpuRatio.goal}; rounds ${targets.cpuRatio.perRound.join(', ')}) ${targets.cpuRatio.pass ? 'PASS' : 'FAIL'}; ` +
        `store reads of a flood over ${REPEATED_KEYS} wrong keys ${targets.repeatedKeyReads.measured} (${targets.repeatedKeyReads.goal}) ${targets.repeatedKeyReads.pass ? 'PASS' : 'FAIL'}.`,
      `Results: ${file}`,
      '',
    ].join('\n'),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
