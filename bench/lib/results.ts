/**
 * Result shapes of one benchmark run, the targets (gateway vs the reference proxy measured in the
 * same run), and their rendering: the raw JSON in bench/results/<date>.json and the tables between
 * the markers in BENCHMARKS.md (the rest of that file is hand-written and left alone).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HeapStats } from './gateway.js';
import type { BurstResult, JsonLoad, LatencyResult, ManyStreamsResult } from './load.js';
import { ALL_PHASES } from './context.js';
import { renderShared, sharedForeignCpu, sharedTargets, type SharedResults } from './shared-results.js';
import { median, ratio, round } from './stats.js';

/** The head-to-head metrics of a results table: label, summary key, decimals. */
export const METRIC_ROWS: ReadonlyArray<readonly [string, string, number]> = [
  ['Requests/s, 64 connections', 'rps64', 0],
  ['p50 latency, 64 connections (ms)', 'p50Ms64', 1],
  ['p99 latency, 64 connections (ms)', 'p99Ms64', 1],
  ['p99.9 latency, 64 connections (ms)', 'p999Ms64', 1],
  ['Event-loop delay at 64 connections, max (ms)', 'loopMaxMs64', 1],
  ['Event-loop delay at 64 connections, p99 (ms)', 'loopP99Ms64', 1],
  ['Proxy CPU per request (µs)', 'cpuUsPerReq', 1],
  ['Scavenges per 1,000 requests, 64 connections', 'scavengesPer1k', 2],
  ['Garbage collection per request, 64 connections (µs)', 'gcUsPerReq', 2],
  ['Mark-compacts per 64-connection load', 'majorGcs', 1],
  ['Proxy CPU use at 64 connections (cores)', 'cpuUtil64', 2],
  ['Latency, 1 connection, median (ms)', 'latency1Ms', 3],
  ['Added latency over direct, 1 connection (ms)', 'addedLatency1Ms', 3],
  ['Stream TTFT, median (ms)', 'ttftMs', 3],
  ['Stream total, 50 × 20 ms, median (ms)', 'streamTotalMs', 1],
  ['Proxy CPU per streamed chunk (µs)', 'cpuUsPerChunk', 2],
  ['Peak RSS, VmHWM (MB)', 'peakRssMB', 1],
];
export interface PacedResult {
  readonly ttftMedianMs: number;
  readonly totalMedianMs: number;
  readonly streams: number;
  readonly failed: number;
}

export interface Round {
  readonly round: number;
  readonly order: readonly string[];
  json: Partial<Record<'reference' | 'gateway', JsonLoad>>;
  latency: Partial<Record<'direct' | 'reference' | 'gateway', LatencyResult>>;
  paced: Partial<Record<'direct' | 'reference' | 'gateway', PacedResult>>;
  burst: Partial<Record<'reference' | 'gateway', BurstResult>>;
}

export interface ScaleConfig {
  readonly label: string;
  readonly keys: number;
  readonly accounts: number;
  readonly setupS: number;
  readonly startRssKb: number;
  /** Absent in results written before this field existed. */
  readonly startHeap?: HeapStats;
  readonly runs: JsonLoad[];
}

export interface ManyStreams extends ManyStreamsResult {
  readonly targetCount: number;
  readonly chunks: number;
  readonly intervalMs: number;
  readonly openPerSecond: number;
  readonly fdLimit: number;
  readonly note: string;
  readonly rssBeforeKb: number;
  readonly rssPeakKb: number;
  readonly rssAfterKb: number;
  readonly kbPerStream: number;
}

export interface Results {
  date: string;
  startedAt: string;
  finishedAt?: string;
  durationS?: number;
  quick: boolean;
  label: string;
  /** Which gateway build was measured (package root, git commit when known). */
  gateway: Record<string, unknown>;
  machine: Record<string, unknown>;
  config: Record<string, unknown>;
  notes: string[];
  subAccount: { rootFallback: boolean; note: string };
  rounds: Round[];
  rss?: Record<'reference' | 'gateway', { hwmKb: number; rssKb: number }>;
  /** The gateway's V8 heap after the head-to-head rounds. */
  gatewayHeap?: HeapStats;
  summary?: Summary;
  scale?: ScaleConfig[];
  manyStreams?: ManyStreams;
  /** The same streams through the reference proxy (absent in results written before it was measured). */
  manyStreamsReference?: ManyStreams;
  /** The shared-mode phase (PostgreSQL + Redis), skipped with a reason when they are missing. */
  shared?: SharedResults;
  targets?: Target[];
}

type Who = 'direct' | 'reference' | 'gateway';
export type Summary = Record<string, Partial<Record<Who | 'ratio', number>>>;

function med<T>(rounds: readonly Round[], pick: (r: Round) => T | undefined, f: (v: T) => number): number {
  const values: number[] = [];
  for (const r of rounds) {
    const v = pick(r);
    if (v !== undefined) values.push(f(v));
  }
  return median(values);
}

/** Medians over the rounds of every metric, per target, with gateway/reference ratios. */
export function summarise(res: Results): Summary {
  const R = res.rounds;
  const row = (
    get: (who: Who) => number,
    whos: readonly Who[] = ['reference', 'gateway'],
  ): Partial<Record<Who | 'ratio', number>> => {
    const out: Partial<Record<Who | 'ratio', number>> = {};
    for (const w of whos) out[w] = get(w);
    out.ratio = ratio(out.gateway ?? NaN, out.reference ?? NaN);
    return out;
  };
  const json = (w: Who, f: (j: JsonLoad) => number): number =>
    w === 'direct' ? NaN : med(R, (r) => r.json[w], f);
  const burst = (w: Who, f: (b: BurstResult) => number): number =>
    w === 'direct' ? NaN : med(R, (r) => r.burst[w], f);
  const all: readonly Who[] = ['direct', 'reference', 'gateway'];
  const summary: Summary = {
    rps64: row((w) => json(w, (j) => j.rps)),
    p50Ms64: row((w) => json(w, (j) => j.p50Ms)),
    p99Ms64: row((w) => json(w, (j) => j.p99Ms)),
    p999Ms64: row((w) => json(w, (j) => j.p999Ms ?? NaN)),
    loopMaxMs64: row((w) => json(w, (j) => j.loopMaxMs ?? NaN)),
    loopP99Ms64: row((w) => json(w, (j) => j.loopP99Ms ?? NaN)),
    cpuUsPerReq: row((w) => json(w, (j) => j.cpuUsPerReq)),
    scavengesPer1k: row((w) => json(w, (j) => j.gc?.scavengesPer1k ?? NaN)),
    gcUsPerReq: row((w) => json(w, (j) => j.gc?.usPerReq ?? NaN)),
    majorGcs: row((w) => json(w, (j) => j.gc?.majors ?? NaN)),
    cpuUtil64: row((w) => json(w, (j) => j.cpuUtil)),
    latency1Ms: row(
      (w) =>
        med(
          R,
          (r) => r.latency[w],
          (l) => l.medianMs,
        ),
      all,
    ),
    ttftMs: row(
      (w) =>
        med(
          R,
          (r) => r.paced[w],
          (p) => p.ttftMedianMs,
        ),
      all,
    ),
    streamTotalMs: row(
      (w) =>
        med(
          R,
          (r) => r.paced[w],
          (p) => p.totalMedianMs,
        ),
      all,
    ),
    cpuUsPerChunk: row((w) => burst(w, (b) => b.cpuUsPerChunk)),
  };
  // The ratios the targets use are paired: gateway / reference within each round (measured back
  // to back), then the median over rounds. The machine's speed drifts between rounds (other VMs on
  // the host); a ratio of two medians taken from different rounds would carry that drift.
  const paired = (
    key: string,
    pick: (r: Round) => { gateway: number | undefined; reference: number | undefined },
  ): void => {
    const ratios = R.map(pick)
      .filter((p) => p.gateway !== undefined && p.reference !== undefined)
      .map((p) => ratio(p.gateway ?? NaN, p.reference ?? NaN));
    const rowOf = summary[key];
    if (rowOf !== undefined && ratios.length > 0) rowOf.ratio = median(ratios);
  };
  paired('rps64', (r) => ({ gateway: r.json.gateway?.rps, reference: r.json.reference?.rps }));
  paired('cpuUsPerReq', (r) => ({
    gateway: r.json.gateway?.cpuUsPerReq,
    reference: r.json.reference?.cpuUsPerReq,
  }));
  paired('cpuUsPerChunk', (r) => ({
    gateway: r.burst.gateway?.cpuUsPerChunk,
    reference: r.burst.reference?.cpuUsPerChunk,
  }));
  const lat = summary['latency1Ms'];
  if (lat !== undefined) {
    const d = lat.direct ?? NaN;
    summary['addedLatency1Ms'] = row((w) => (w === 'direct' ? NaN : (lat[w] ?? NaN) - d));
  }
  const rss = res.rss;
  if (rss !== undefined) summary['peakRssMB'] = row((w) => (w === 'direct' ? NaN : rss[w].hwmKb / 1024));
  return summary;
}

export interface Target {
  readonly name: string;
  readonly goal: string;
  readonly value: string;
  readonly pass: boolean | undefined;
}

/** A note when other processes used noticeable CPU during some measurements. */
export function noiseNote(res: Results): string | undefined {
  const seen: number[] = [];
  for (const r of res.rounds) {
    for (const j of Object.values(r.json)) seen.push(j.foreignCpu);
    for (const b of Object.values(r.burst)) seen.push(b.foreignCpu);
  }
  for (const c of res.scale ?? []) for (const j of c.runs) seen.push(j.foreignCpu);
  seen.push(...sharedForeignCpu(res.shared));
  const noisy = seen.filter((x) => x > 0.1);
  if (noisy.length === 0) return undefined;
  return (
    `${noisy.length} of ${seen.length} load measurements ran while other processes used more than 0.1 core ` +
    `(up to ${round(Math.max(...noisy), 2)}); medians over rounds dampen this, but re-run on an idle machine for clean figures.`
  );
}

export function evaluateTargets(res: Results): Target[] {
  const s = res.summary ?? {};
  const g = (k: string, w: Who | 'ratio'): number => s[k]?.[w] ?? NaN;
  const t = (name: string, goal: string, value: string, pass: boolean | undefined): Target => ({
    name,
    goal,
    value,
    pass,
  });
  const fin = (x: number): boolean | undefined => (Number.isFinite(x) ? true : undefined);
  const rpsRatio = g('rps64', 'ratio');
  const addedLat = g('latency1Ms', 'gateway') - g('latency1Ms', 'reference');
  const ttftOver = g('ttftMs', 'gateway') - g('ttftMs', 'reference');
  const chunkRatio = g('cpuUsPerChunk', 'ratio');
  const rss = g('peakRssMB', 'gateway');
  const p99Ratio = g('p99Ms64', 'ratio');
  const loopMax = g('loopMaxMs64', 'gateway');
  const loopP99 = g('loopP99Ms64', 'gateway');
  const cpuReqRatio = g('cpuUsPerReq', 'ratio');
  // The head-to-head targets only when that phase ran (BENCH_PHASES may leave it out).
  const head: Target[] = [
    t(
      'Throughput, 64 connections',
      '≥ 0.7× reference',
      `${round(rpsRatio, 2)}×`,
      fin(rpsRatio) && rpsRatio >= 0.7,
    ),
    t(
      'Added latency, 1 connection',
      '≤ reference + 0.3 ms',
      `+${round(addedLat, 3)} ms`,
      fin(addedLat) && addedLat <= 0.3,
    ),
    t('Streaming TTFT', '≤ reference + 1 ms', `+${round(ttftOver, 3)} ms`, fin(ttftOver) && ttftOver <= 1),
    t(
      'CPU per streamed chunk',
      '≤ 1.5× reference',
      `${round(chunkRatio, 2)}×`,
      fin(chunkRatio) && chunkRatio <= 1.5,
    ),
    t('Peak RSS, 64 connections', '≤ 150 MB', `${round(rss, 1)} MB`, fin(rss) && rss <= 150),
    // Round two (issue 15): the tail and the event loop under load.
    t(
      'p99 latency, 64 connections',
      '≤ 1.25× reference',
      `${round(p99Ratio, 2)}×`,
      fin(p99Ratio) && p99Ratio <= 1.25,
    ),
    t(
      'Event-loop delay at 64 connections',
      'max ≤ 10 ms, p99 ≤ 2 ms',
      `max ${round(loopMax, 1)} ms, p99 ${round(loopP99, 1)} ms`,
      fin(loopMax) && loopMax <= 10 && loopP99 <= 2,
    ),
    t(
      'Throughput, 64 connections (round two)',
      '≥ 0.9× reference',
      `${round(rpsRatio, 2)}×`,
      fin(rpsRatio) && rpsRatio >= 0.9,
    ),
    t(
      'CPU per request',
      '≤ 1.2× reference',
      `${round(cpuReqRatio, 2)}×`,
      fin(cpuReqRatio) && cpuReqRatio <= 1.2,
    ),
  ];
  const out: Target[] = res.rounds.length > 0 ? head : [];
  const sc = res.scale;
  const small = sc?.[0];
  const large = sc?.[sc.length - 1];
  if (small !== undefined && large !== undefined && small !== large) {
    // Paired like the head-to-head ratios: large / small within each round (measured back to
    // back), median over rounds.
    const pairs = (f: (j: JsonLoad) => number): number =>
      median(
        large.runs
          .map((j, i) => {
            const base = small.runs[i];
            return base === undefined ? NaN : f(j) / f(base);
          })
          .filter(Number.isFinite),
      );
    const cpuRatio = pairs((j) => j.cpuUsPerReq);
    const rpsRatioScale = pairs((j) => j.rps);
    out.push(
      t(
        'Flat per-request cost (scale run)',
        'large/small CPU µs/req ≤ 1.10 and req/s ≥ 0.90',
        `CPU ${round(cpuRatio, 2)}×, req/s ${round(rpsRatioScale, 2)}×`,
        fin(cpuRatio) && cpuRatio <= 1.1 && rpsRatioScale >= 0.9,
      ),
    );
  }
  const m = res.manyStreams;
  if (m !== undefined) {
    const why = m.note !== '' ? m.note : res.quick ? 'quick mode' : 'BENCH_STREAMS';
    const reduced = m.requested < 10_000 ? ` (${m.requested.toLocaleString('en-US')} streams: ${why})` : '';
    out.push(
      t(
        '10,000 concurrent streams',
        'no errors',
        `${m.errors} errors, peak ${m.peakConcurrent} concurrent${reduced}`,
        m.errors === 0 && m.peakConcurrent >= m.requested * 0.95,
      ),
    );
    const r = res.manyStreamsReference;
    if (r !== undefined) {
      const ratio = m.kbPerStream / r.kbPerStream;
      out.push(
        t(
          'Memory per concurrent stream',
          '≤ 1.2× reference',
          `${round(ratio, 2)}× (${fmt(m.kbPerStream, 1)} vs ${fmt(r.kbPerStream, 1)} kB)`,
          fin(ratio) && ratio <= 1.2,
        ),
      );
    }
  }
  out.push(...sharedTargets(res.shared));
  return out;
}

const fmt = (x: number | undefined, digits = 2): string =>
  x === undefined || !Number.isFinite(x) ? '–' : String(round(x, digits));

/** The generated part of BENCHMARKS.md. */
export function renderMarkdown(res: Results, jsonPath: string): string {
  const s = res.summary ?? {};
  const L: string[] = [];
  L.push(
    `Run of ${res.startedAt} (${res.quick ? 'quick' : 'full'} mode, ${String(res.config['rounds'])} round(s), ` +
      `${fmt(res.durationS, 0)} s) — raw numbers: \`${jsonPath}\`.`,
  );
  L.push('', `Gateway: ${String(res.gateway['describe'])}.`, '');
  L.push(
    `Machine: ${String(res.machine['cpus'])} × ${String(res.machine['cpuModel'])}, Node ${String(res.machine['node'])}, ` +
      `taskset ${res.machine['taskset'] === true ? 'used (mock + load generator on CPU 0, proxy on CPU 1)' : 'not available (no pinning)'}.`,
  );
  for (const n of res.notes) L.push('', `> **Note:** ${n}`);
  L.push('', '### Targets', '', '| Target | Goal | Measured | Result |', '|---|---|---|---|');
  for (const t of res.targets ?? []) {
    L.push(
      `| ${t.name} | ${t.goal} | ${t.value} | ${t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : '**FAIL**'} |`,
    );
  }
  if (res.rounds.length > 0) {
    L.push(
      '',
      '### Gateway vs reference (medians over rounds; ratios of throughput and CPU paired per round)',
      '',
    );
    L.push(
      '| Metric | Direct to mock | Reference proxy | Gateway | Gateway / reference |',
      '|---|---|---|---|---|',
    );
    for (const [label, key, d] of METRIC_ROWS) {
      const v = s[key] ?? {};
      L.push(
        `| ${label} | ${fmt(v.direct, d)} | ${fmt(v.reference, d)} | ${fmt(v.gateway, d)} | ${fmt(v.ratio, 2)} |`,
      );
    }
    const h = res.gatewayHeap;
    if (h !== undefined) {
      L.push(
        '',
        `Gateway V8 heap after the rounds: ${fmt(h.heapUsedMB, 1)} MB used of ${fmt(h.heapTotalMB, 1)} MB, ` +
          `${fmt(h.externalMB, 1)} MB external (the rest of the RSS is code, stacks, SQLite and allocator slack).`,
      );
    }
  }
  if (res.scale !== undefined) {
    L.push('', '### Scale run (gateway, 64 connections)', '');
    L.push(
      '| Configuration | Pool keys | Sub-accounts | Requests/s | CPU µs/request (each run) | RSS after start (MB) | V8 heap used after start (MB) |',
      '|---|---|---|---|---|---|---|',
    );
    for (const c of res.scale) {
      const each = c.runs.map((r) => fmt(r.cpuUsPerReq, 0)).join(', ');
      L.push(
        `| ${c.label} | ${c.keys.toLocaleString('en-US')} | ${c.accounts.toLocaleString('en-US')} | ` +
          `${fmt(median(c.runs.map((r) => r.rps)), 0)} | ${fmt(median(c.runs.map((r) => r.cpuUsPerReq)), 1)} (${each}) | ` +
          `${fmt(c.startRssKb / 1024, 1)} | ${fmt(c.startHeap?.heapUsedMB, 1)} |`,
      );
    }
  }
  const m = res.manyStreams;
  if (m !== undefined) {
    const r = res.manyStreamsReference;
    L.push(
      '',
      `### Many concurrent streams (${r === undefined ? 'gateway' : 'reference, then gateway'})`,
      '',
    );
    const line = (who: string, x: ManyStreams): string =>
      `${who}: ${x.ok} ok, ${x.errors} errors${x.errors > 0 ? ` (${JSON.stringify(x.errorKinds)})` : ''}, peak ${x.peakConcurrent} concurrent, ` +
      `TTFT p50 ${fmt(x.ttftP50Ms, 1)} ms / p99 ${fmt(x.ttftP99Ms, 1)} ms, RSS ${fmt(x.rssBeforeKb / 1024, 1)} MB before, ` +
      `${fmt(x.rssPeakKb / 1024, 1)} MB peak, ${fmt(x.rssAfterKb / 1024, 1)} MB after → ≈ ${fmt(x.kbPerStream, 1)} kB per stream.`;
    L.push(
      `${m.requested.toLocaleString('en-US')} streams of ${m.chunks} chunks ${m.intervalMs} ms apart, one connection each, opened at ${m.openPerSecond}/s.`,
      '',
    );
    if (r !== undefined) L.push(`- ${line('Reference proxy', r)}`);
    L.push(`- ${line('Gateway', m)}`);
  }
  L.push(...renderShared(res.shared));
  return L.join('\n');
}

export function isCompleteRun(phases: Iterable<string>): boolean {
  const set = new Set(phases);
  return ALL_PHASES.every((p) => set.has(p));
}

const START = '<!-- bench:results:start -->';
const END = '<!-- bench:results:end -->';

/** Writes bench/results/<date>.json and replaces the generated block of BENCHMARKS.md. */
export function writeResults(repoRoot: string, res: Results, updateMarkdown: boolean): { jsonPath: string } {
  const dir = join(repoRoot, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const phases = (res.config['phases'] as string[] | undefined) ?? [];
  const partial = !isCompleteRun(phases);
  const suffix = `${res.quick ? '-quick' : ''}${res.label !== '' ? `-${res.label}` : ''}${partial ? `-${phases.join('-')}` : ''}`;
  const rel = `bench/results/${res.date}${suffix}.json`;
  writeFileSync(join(repoRoot, rel), `${JSON.stringify(res, null, 2)}\n`);
  if (!updateMarkdown || partial) return { jsonPath: rel };
  const mdPath = join(repoRoot, 'BENCHMARKS.md');
  const block = `${START}\n\n${renderMarkdown(res, rel)}\n\n${END}`;
  const md = existsSync(mdPath) ? readFileSync(mdPath, 'utf8') : '# Benchmarks\n\n## Latest results\n\n';
  const a = md.indexOf(START);
  const b = md.indexOf(END);
  const next =
    a !== -1 && b > a ? md.slice(0, a) + block + md.slice(b + END.length) : `${md.trimEnd()}\n\n${block}\n`;
  writeFileSync(mdPath, next);
  return { jsonPath: rel };
}
