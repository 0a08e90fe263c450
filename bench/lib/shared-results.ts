/**
 * Results of the shared-mode phase (one gateway on PostgreSQL + Redis against the embedded SQLite
 * gateway and the reference proxy, two shared instances behind the load generator, and the store
 * round trips counted on the servers): their shapes, medians and paired ratios, the three
 * shared-mode targets, and the Markdown section. results.ts folds them into the run's results.
 */
import type { HeapStats } from './gateway.js';
import type { BurstResult, JsonLoad, LatencyResult } from './load.js';
import { METRIC_ROWS, type PacedResult, type Target } from './results.js';
import { median, ratio, round } from './stats.js';

export type SharedWho = 'direct' | 'reference' | 'embedded' | 'shared';
export type Served = 'reference' | 'embedded' | 'shared';

export interface SharedRound {
  readonly round: number;
  readonly order: readonly Served[];
  json: Partial<Record<Served, JsonLoad>>;
  latency: Partial<Record<SharedWho, LatencyResult>>;
  paced: Partial<Record<SharedWho, PacedResult>>;
  burst: Partial<Record<Served, BurstResult>>;
  /** CPU of redis-server + the PostgreSQL backends of the bench database during the shared JSON load. */
  storeCpuUsPerReq?: number;
  /** The same during the shared stream burst, per chunk. */
  storeCpuUsPerChunk?: number;
}

export interface TwoInstanceRound {
  readonly round: number;
  readonly order: readonly ('one' | 'two')[];
  /** One shared instance at 64 connections. */
  one?: JsonLoad;
  /** Two shared instances at `connectionsEach` connections each, loaded at the same time. */
  two?: readonly JsonLoad[];
}

export interface TwoInstances {
  readonly connectionsEach: number;
  readonly pinning: string;
  rounds: TwoInstanceRound[];
  rss?: Array<{ hwmKb: number; rssKb: number }>;
  summary?: {
    oneRps: number;
    twoRps: number;
    /** Two ÷ one, paired per round. */
    ratio: number;
    oneCpuUsPerReq: number;
    twoCpuUsPerReq: number;
    /** Answers other than 2xx and errors over all the rounds, one instance and two. */
    oneFailed: number;
    twoFailed: number;
  };
}

/** Round trips of one JSON load on the shared gateway, counted on the servers. */
export interface RoundTripCount {
  readonly account: string;
  readonly seconds: number;
  readonly requests: number;
  readonly rps: number;
  readonly cpuUsPerReq: number;
  /** Answers other than 2xx, and errors (absent in results written before this field existed). */
  readonly non2xx?: number;
  /** Those answers by status code. */
  readonly statusCodes?: Record<string, number>;
  /** Median of sequential requests on one connection after the load (ms). */
  readonly latency1Ms?: number;
  /** Redis commands executed during the load, by command (INFO commandstats). */
  readonly redisCalls: Record<string, number>;
  /**
   * Commands executed per request, the idle rate of the same duration taken off. Redis counts the
   * commands a Lua script runs inside the server as well (a GCRA check is EVALSHA + TIME, GET, SET).
   */
  readonly redisPerRequest: number;
  /** Script calls (EVALSHA, EVAL, FCALL, …) per request, idle rate taken off: round trips. */
  readonly redisScriptsPerRequest?: number;
  /** Transactions of the bench database over the load and the settle time after it. */
  readonly postgresTransactions?: number;
  /** Per 1,000 requests, the idle rate taken off. */
  readonly postgresPerThousand?: number;
}

export interface RoundTrips {
  readonly idleSeconds: number;
  /** Wait before PostgreSQL's counters are read (absent when they were not: quick mode). */
  readonly settleSeconds?: number;
  readonly idleRedisPerSecond: number;
  readonly idleRedisCalls: Record<string, number>;
  readonly idlePostgresPerSecond?: number;
  readonly unlimited: RoundTripCount;
  readonly limited?: RoundTripCount;
}

export interface SharedResults {
  /** Why the phase did not run (no PostgreSQL, no redis-server, BENCH_POSTGRES=off). */
  skipped?: string;
  /** Why the phase stopped (the other phases' results are kept). */
  error?: string;
  database?: string;
  redisVersion?: string;
  pinning?: string;
  subAccount?: string;
  rounds: SharedRound[];
  rss?: Partial<Record<Served, { hwmKb: number; rssKb: number }>>;
  heap?: Partial<Record<'embedded' | 'shared', HeapStats>>;
  roundTrips?: RoundTrips;
  twoInstances?: TwoInstances;
  summary?: SharedSummary;
  cleanup?: string;
}

/** Medians over rounds per target; `ratio` shared ÷ embedded and `diff` shared − embedded, paired. */
export type SharedSummary = Record<string, Partial<Record<SharedWho | 'ratio' | 'diff', number>>>;

const SERVED: readonly Served[] = ['reference', 'embedded', 'shared'];
const ALL: readonly SharedWho[] = ['direct', ...SERVED];

export function summariseShared(sh: SharedResults): SharedSummary {
  const R = sh.rounds;
  const out: SharedSummary = {};
  const metric = (
    key: string,
    whos: readonly SharedWho[],
    get: (r: SharedRound, w: SharedWho) => number | undefined,
  ): void => {
    const row: Partial<Record<SharedWho | 'ratio' | 'diff', number>> = {};
    for (const w of whos) {
      row[w] = median(
        R.map((r) => get(r, w)).filter((v): v is number => v !== undefined && !Number.isNaN(v)),
      );
    }
    // Paired: shared against embedded within each round (measured back to back), median over rounds.
    const pairs = R.map((r) => [get(r, 'shared'), get(r, 'embedded')] as const).filter(
      (p): p is readonly [number, number] => p[0] !== undefined && p[1] !== undefined,
    );
    row.ratio = median(pairs.map(([s, e]) => ratio(s, e)).filter((x) => !Number.isNaN(x)));
    row.diff = median(pairs.map(([s, e]) => s - e).filter((x) => !Number.isNaN(x)));
    out[key] = row;
  };
  const json = (f: (j: JsonLoad) => number) => (r: SharedRound, w: SharedWho) =>
    w === 'direct' ? undefined : r.json[w] === undefined ? undefined : f(r.json[w]);
  metric(
    'rps64',
    SERVED,
    json((j) => j.rps),
  );
  metric(
    'p50Ms64',
    SERVED,
    json((j) => j.p50Ms),
  );
  metric(
    'p99Ms64',
    SERVED,
    json((j) => j.p99Ms),
  );
  metric(
    'cpuUsPerReq',
    SERVED,
    json((j) => j.cpuUsPerReq),
  );
  metric(
    'cpuUtil64',
    SERVED,
    json((j) => j.cpuUtil),
  );
  metric('latency1Ms', ALL, (r, w) => r.latency[w]?.medianMs);
  metric('addedLatency1Ms', SERVED, (r, w) => {
    const d = r.latency.direct?.medianMs;
    const l = r.latency[w]?.medianMs;
    return d === undefined || l === undefined ? undefined : l - d;
  });
  metric('ttftMs', ALL, (r, w) => r.paced[w]?.ttftMedianMs);
  metric('streamTotalMs', ALL, (r, w) => r.paced[w]?.totalMedianMs);
  metric('cpuUsPerChunk', SERVED, (r, w) => (w === 'direct' ? undefined : r.burst[w]?.cpuUsPerChunk));
  metric('storeCpuUsPerReq', ['shared'], (r, w) => (w === 'shared' ? r.storeCpuUsPerReq : undefined));
  // The gateway's CPU plus, in shared mode, that of redis-server and the PostgreSQL backends (the
  // embedded gateway does its SQLite writes in its own process).
  metric('totalCpuUsPerReq', ['embedded', 'shared'], (r, w) => {
    const own = w === 'embedded' || w === 'shared' ? r.json[w]?.cpuUsPerReq : undefined;
    if (own === undefined || w === 'embedded') return own;
    return r.storeCpuUsPerReq === undefined ? undefined : own + r.storeCpuUsPerReq;
  });
  metric('storeCpuUsPerChunk', ['shared'], (r, w) => (w === 'shared' ? r.storeCpuUsPerChunk : undefined));
  const rss = sh.rss;
  if (rss !== undefined) {
    const row: Partial<Record<SharedWho | 'ratio' | 'diff', number>> = {};
    for (const w of SERVED) row[w] = (rss[w]?.hwmKb ?? NaN) / 1024;
    row.ratio = ratio(row.shared ?? NaN, row.embedded ?? NaN);
    row.diff = (row.shared ?? NaN) - (row.embedded ?? NaN);
    out['peakRssMB'] = row;
  }
  return out;
}

/** Aggregate of the two-instance measurements (medians; two ÷ one paired per round). */
export function summariseTwoInstances(t: TwoInstances): NonNullable<TwoInstances['summary']> {
  const agg = (loads: readonly JsonLoad[]): { rps: number; cpu: number } => {
    const completed = loads.reduce((a, j) => a + j.completed, 0);
    const cpu = loads.reduce((a, j) => a + j.cpuUsPerReq * j.completed, 0);
    return { rps: loads.reduce((a, j) => a + j.rps, 0), cpu: completed > 0 ? cpu / completed : NaN };
  };
  const ones = t.rounds.flatMap((r) => (r.one === undefined ? [] : [agg([r.one])]));
  const twos = t.rounds.flatMap((r) => (r.two === undefined ? [] : [agg(r.two)]));
  const ratios = t.rounds
    .filter((r) => r.one !== undefined && r.two !== undefined)
    .map((r) => ratio(agg(r.two ?? []).rps, agg(r.one ? [r.one] : []).rps));
  const failed = (loads: readonly JsonLoad[]): number => loads.reduce((a, j) => a + j.non2xx + j.errors, 0);
  return {
    oneRps: median(ones.map((a) => a.rps)),
    twoRps: median(twos.map((a) => a.rps)),
    ratio: median(ratios),
    oneCpuUsPerReq: median(ones.map((a) => a.cpu)),
    twoCpuUsPerReq: median(twos.map((a) => a.cpu)),
    oneFailed: failed(t.rounds.flatMap((r) => (r.one === undefined ? [] : [r.one]))),
    twoFailed: failed(t.rounds.flatMap((r) => r.two ?? [])),
  };
}

/** A note naming the measurements of the phase that had answers other than 2xx, or undefined. */
export function sharedFailures(sh: SharedResults): string | undefined {
  const seen: string[] = [];
  const add = (what: string, n: number, j?: JsonLoad): void => {
    const codes = j?.statusCodes === undefined ? '' : ` (status ${JSON.stringify(j.statusCodes)})`;
    if (n > 0) seen.push(`${what}: ${n}${codes}`);
  };
  for (const r of sh.rounds) {
    for (const [w, j] of Object.entries(r.json))
      add(`round ${r.round} JSON load ${w}`, j.non2xx + j.errors, j);
    for (const [w, l] of Object.entries(r.latency)) add(`round ${r.round} 1-connection ${w}`, l.errors);
    for (const [w, p] of Object.entries(r.paced)) add(`round ${r.round} paced streams ${w}`, p.failed);
    for (const [w, b] of Object.entries(r.burst)) add(`round ${r.round} stream burst ${w}`, b.failed);
  }
  for (const c of [sh.roundTrips?.unlimited, sh.roundTrips?.limited]) {
    const codes = c?.statusCodes === undefined ? '' : ` (status ${JSON.stringify(c.statusCodes)})`;
    if (c !== undefined && (c.non2xx ?? 0) > 0) seen.push(`round trips, ${c.account}: ${c.non2xx}${codes}`);
  }
  for (const r of sh.twoInstances?.rounds ?? []) {
    if (r.one !== undefined) add(`round ${r.round} one instance`, r.one.non2xx + r.one.errors, r.one);
    (r.two ?? []).forEach((j, i) => add(`round ${r.round} two instances, #${i + 1}`, j.non2xx + j.errors, j));
  }
  if (seen.length === 0) return undefined;
  return `Shared-mode phase: answers other than 2xx, errors or failed streams (${seen.join('; ')}).`;
}

/** Background CPU of other processes seen during the phase's load measurements. */
export function sharedForeignCpu(sh: SharedResults | undefined): number[] {
  if (sh === undefined) return [];
  const seen: number[] = [];
  for (const r of sh.rounds) {
    for (const j of Object.values(r.json)) seen.push(j.foreignCpu);
    for (const b of Object.values(r.burst)) seen.push(b.foreignCpu);
  }
  for (const r of sh.twoInstances?.rounds ?? []) {
    if (r.one !== undefined) seen.push(r.one.foreignCpu);
    for (const j of r.two ?? []) seen.push(j.foreignCpu);
  }
  return seen;
}

export function sharedTargets(sh: SharedResults | undefined): Target[] {
  const goals: Array<[string, string]> = [
    ['Shared mode: CPU per request', '≤ 1.3× embedded'],
    ['Shared mode: added latency, 1 connection', '≤ embedded + 0.2 ms'],
    ['Shared mode: streaming TTFT', '≤ embedded + 0.5 ms'],
  ];
  if (sh === undefined) return [];
  const why =
    sh.skipped !== undefined ? `skipped: ${sh.skipped}` : sh.error !== undefined ? 'phase failed' : '';
  const s = sh.summary ?? {};
  const cpu = s['cpuUsPerReq']?.ratio ?? NaN;
  const lat = s['latency1Ms']?.diff ?? NaN;
  const ttft = s['ttftMs']?.diff ?? NaN;
  const ok = (x: number, limit: number): boolean | undefined =>
    sh.skipped !== undefined ? undefined : Number.isFinite(x) ? x <= limit : false;
  const sign = (x: number): string => (x >= 0 ? `+${round(x, 3)}` : String(round(x, 3)));
  const value = (v: string, x: number): string =>
    Number.isFinite(x) ? v : why !== '' ? why : 'not measured';
  return [
    { name: goals[0]![0], goal: goals[0]![1], value: value(`${round(cpu, 2)}×`, cpu), pass: ok(cpu, 1.3) },
    { name: goals[1]![0], goal: goals[1]![1], value: value(`${sign(lat)} ms`, lat), pass: ok(lat, 0.2) },
    { name: goals[2]![0], goal: goals[2]![1], value: value(`${sign(ttft)} ms`, ttft), pass: ok(ttft, 0.5) },
  ];
}

const fmt = (x: number | undefined, digits = 2): string =>
  x === undefined || !Number.isFinite(x) ? '–' : String(round(x, digits));

const calls = (c: Record<string, number>): string => {
  const list = Object.entries(c)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([cmd, n]) => `${cmd} ${n}`);
  return list.length === 0 ? 'none' : list.join(', ');
};

/** The shared-mode section of the generated block of BENCHMARKS.md. */
export function renderShared(sh: SharedResults | undefined): string[] {
  if (sh === undefined) return [];
  const L: string[] = ['', '### Shared mode: one gateway on PostgreSQL + Redis', ''];
  if (sh.skipped !== undefined) {
    L.push(`Skipped: ${sh.skipped}.`);
    return L;
  }
  if (sh.error !== undefined) L.push(`**The phase failed:** ${sh.error}`, '');
  L.push(
    `Medians over rounds; "shared ÷ embedded" is paired per round (measured back to back), and so is the ` +
      `difference used by the latency and TTFT targets. Own database \`${sh.database ?? '?'}\` (dropped at the end), ` +
      `own redis-server ${sh.redisVersion ?? '?'}. ${sh.pinning ?? ''}`,
    '',
    '| Metric | Direct to mock | Reference proxy | Embedded (SQLite) | Shared (PostgreSQL + Redis) | Shared ÷ embedded | Shared − embedded |',
    '|---|---|---|---|---|---|---|',
  );
  const s = sh.summary ?? {};
  const rows: ReadonlyArray<readonly [string, string, number]> = [
    ...METRIC_ROWS,
    ['Redis + PostgreSQL backends CPU per request (µs)', 'storeCpuUsPerReq', 1],
    ['Gateway + Redis + PostgreSQL CPU per request (µs)', 'totalCpuUsPerReq', 1],
    ['Redis + PostgreSQL backends CPU per streamed chunk (µs)', 'storeCpuUsPerChunk', 2],
  ];
  for (const [label, key, d] of rows) {
    const v = s[key] ?? {};
    L.push(
      `| ${label} | ${fmt(v.direct, d)} | ${fmt(v.reference, d)} | ${fmt(v.embedded, d)} | ${fmt(v.shared, d)} | ` +
        `${key.startsWith('store') ? '–' : fmt(v.ratio, 2)} | ${key.startsWith('store') ? '–' : fmt(v.diff, d)} |`,
    );
  }
  const h = sh.heap;
  if (h?.shared !== undefined) {
    L.push(
      '',
      `V8 heap after the rounds: shared ${fmt(h.shared.heapUsedMB, 1)} MB used of ${fmt(h.shared.heapTotalMB, 1)} MB, ` +
        `embedded ${fmt(h.embedded?.heapUsedMB, 1)} MB used of ${fmt(h.embedded?.heapTotalMB, 1)} MB.`,
    );
  }
  const t = sh.twoInstances;
  if (t !== undefined && t.summary !== undefined) {
    const perRound = t.rounds
      .map((r) => {
        const one = r.one?.rps ?? NaN;
        const two = (r.two ?? []).reduce((a, j) => a + j.rps, 0);
        return `${fmt(one, 0)} → ${fmt(two, 0)}`;
      })
      .join(', ');
    L.push(
      '',
      `**Two shared instances** (same database and Redis, ${t.connectionsEach} connections on each, loaded at the same ` +
        `time; ${t.pinning}): ${fmt(t.summary.twoRps, 0)} req/s in aggregate against ${fmt(t.summary.oneRps, 0)} req/s for ` +
        `one instance at 64 connections (${fmt(t.summary.ratio, 2)}×, paired per round; per round ${perRound}); gateway CPU ` +
        `${fmt(t.summary.twoCpuUsPerReq, 1)} µs per request over both against ${fmt(t.summary.oneCpuUsPerReq, 1)} µs for one; ` +
        `${t.summary.twoFailed} answers not 2xx with two instances, ${t.summary.oneFailed} with one.`,
    );
  }
  const rt = sh.roundTrips;
  if (rt !== undefined) {
    const line = (c: RoundTripCount): string =>
      `${c.account}: ${c.requests.toLocaleString('en-US')} requests in ${c.seconds} s (${fmt(c.rps, 0)} req/s, ` +
      `${fmt(c.cpuUsPerReq, 1)} µs CPU/req${(c.non2xx ?? 0) > 0 ? `, ${c.non2xx} not 2xx` : ''}) — Redis ` +
      `${fmt(c.redisScriptsPerRequest, 3)} script calls and ${fmt(c.redisPerRequest, 3)} commands executed per request ` +
      `(${calls(c.redisCalls)})` +
      (c.postgresPerThousand === undefined
        ? ''
        : `; PostgreSQL ${c.postgresTransactions ?? '?'} transactions (with the ${rt.settleSeconds ?? '?'} s after), ` +
          `${fmt(c.postgresPerThousand, 2)} per 1,000 requests above the idle rate`) +
      (c.latency1Ms === undefined ? '' : `; 1-connection latency ${fmt(c.latency1Ms, 3)} ms (median)`);
    const pgIdle =
      rt.idlePostgresPerSecond === undefined
        ? ' (PostgreSQL transactions are counted in full mode only)'
        : ` and ${fmt(rt.idlePostgresPerSecond, 2)} PostgreSQL transactions/s`;
    L.push(
      '',
      `**Store round trips**, counted on the servers (Redis \`INFO commandstats\`, which also counts the commands a ` +
        `script runs inside the server; PostgreSQL \`pg_stat_database\` transactions of the bench database), idle rates subtracted (idle: ${fmt(rt.idleRedisPerSecond, 1)} Redis commands/s ` +
        `— ${calls(rt.idleRedisCalls)} in ${rt.idleSeconds} s —${pgIdle}):`,
      '',
      `- ${line(rt.unlimited)}`,
    );
    if (rt.limited !== undefined) L.push(`- ${line(rt.limited)}`);
  }
  if (sh.cleanup !== undefined) L.push('', `Clean-up: ${sh.cleanup}.`);
  return L;
}
