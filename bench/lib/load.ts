/**
 * Load generation and client-side timing: autocannon for JSON throughput, a sequential keep-alive
 * client for latency at one connection (sub-millisecond resolution, which autocannon's integer
 * histogram lacks), and a small node:http SSE client for stream timings, bursts and the
 * many-concurrent-streams test. CPU time of the proxy is read from /proc around each measurement.
 */
import autocannon from 'autocannon';
import { Agent, request } from 'node:http';
import { cpuMicros, foreignCpu } from './procs.js';
import { median, percentile } from './stats.js';

export interface Target {
  /** For messages: direct, reference, gateway, embedded, shared, … */
  readonly name: string;
  /** Origin, e.g. http://127.0.0.1:4000 */
  readonly url: string;
  /** Bearer key sent by the client. */
  readonly key: string;
  /** Process whose CPU is measured (undefined for the mock itself). */
  readonly pid: number | undefined;
  /** Its Prometheus endpoint, when it has one (the gateway): event-loop delay during loads. */
  readonly metricsUrl?: string;
}

const MESSAGES = [
  { role: 'system', content: 'You are a concise assistant. Answer in one short sentence.' },
  { role: 'user', content: 'Say hello to the benchmark and tell me what a gateway does, briefly.' },
];
export const JSON_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, max_tokens: 64 });
const STREAM_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true });
const PATH = '/v1/chat/completions';

function headers(target: Target): Record<string, string> {
  return { authorization: `Bearer ${target.key}`, 'content-type': 'application/json' };
}

function cpuOf(target: Target): number {
  return target.pid === undefined ? 0 : cpuMicros(target.pid);
}

export interface JsonLoad {
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  /**
   * The target's event-loop delay during the load (its /metrics: prom-client's
   * monitorEventLoopDelay, reset by the scrape just before), ms beyond the sampling timer's own
   * interval (see LOOP_RESOLUTION_MS); absent without /metrics.
   */
  readonly loopMaxMs?: number;
  readonly loopP99Ms?: number;
  /**
   * Garbage collection during the load, from the target's /metrics (prom-client's
   * nodejs_gc_duration_seconds; the reference proxy counts the same): counts that do not depend
   * on how fast the machine is today, unlike CPU time.
   */
  readonly gc?: GcDuring;
  readonly completed: number;
  readonly ok2xx: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly durationS: number;
  /** Proxy CPU (user+sys) per completed request, µs. */
  readonly cpuUsPerReq: number;
  /** Proxy CPU seconds per wall second (1 = one core saturated). */
  readonly cpuUtil: number;
  /** Cores used meanwhile by processes outside the benchmark (noise). */
  readonly foreignCpu: number;
  /** Answers other than 2xx by status code, when there were any. */
  readonly statusCodes?: Record<string, number>;
}

/**
 * Both proxies sample their loop with a 10 ms timer (prom-client's default precision, and the
 * reference's own monitor). Node's histogram records the whole interval between two ticks, not
 * how late a tick was: an idle loop reads ≈ 10.1 ms at p99 (measured on this machine, Node 20).
 */
export const LOOP_RESOLUTION_MS = 10;

export interface GcDuring {
  /** Minor collections (scavenges) per 1,000 completed requests. */
  readonly scavengesPer1k: number;
  /** Time in every kind of collection (minor, major, incremental marking) per request, µs. */
  readonly usPerReq: number;
  /** Major collections (mark-compacts) during the load. */
  readonly majors: number;
}

interface Scrape {
  readonly loop: { readonly maxMs: number; readonly p99Ms: number };
  /** Cumulative count and seconds of collections by kind (minor, major, incremental). */
  readonly gc: ReadonlyMap<string, { readonly count: number; readonly seconds: number }>;
}

/**
 * Event-loop delay since the previous scrape, from prom-client's default gauges (seconds → ms):
 * how late the sampling timer ran, i.e. the recorded interval less the timer's own 10 ms. And
 * the collections so far.
 */
async function scrape(url: string): Promise<Scrape> {
  const text = await (await fetch(url)).text();
  const gauge = (name: string): number => {
    const seconds = Number(
      new RegExp(`^proxyxai_nodejs_eventloop_lag_${name}_seconds (\\S+)$`, 'm').exec(text)?.[1] ?? NaN,
    );
    return Math.max(0, seconds * 1000 - LOOP_RESOLUTION_MS);
  };
  const gc = new Map<string, { count: number; seconds: number }>();
  for (const m of text.matchAll(
    /^proxyxai_nodejs_gc_duration_seconds_(count|sum)\{kind="(\w+)"\} (\S+)$/gm,
  )) {
    const [, field, kind, value] = m as unknown as [string, 'count' | 'sum', string, string];
    const e = gc.get(kind) ?? { count: 0, seconds: 0 };
    if (field === 'count') e.count = Number(value);
    else e.seconds = Number(value);
    gc.set(kind, e);
  }
  return { loop: { maxMs: gauge('max'), p99Ms: gauge('p99') }, gc };
}

function gcBetween(before: Scrape, after: Scrape, requests: number): GcDuring | undefined {
  if (after.gc.size === 0 || requests === 0) return undefined;
  const delta = (kind: string, f: 'count' | 'seconds'): number =>
    (after.gc.get(kind)?.[f] ?? 0) - (before.gc.get(kind)?.[f] ?? 0);
  let seconds = 0;
  for (const kind of after.gc.keys()) if (kind !== 'weakcb') seconds += delta(kind, 'seconds');
  return {
    scavengesPer1k: (delta('minor', 'count') * 1000) / requests,
    usPerReq: (seconds * 1e6) / requests,
    majors: delta('major', 'count'),
  };
}

/** autocannon POST /v1/chat/completions at `connections` for `seconds`. */
export async function jsonLoad(target: Target, connections: number, seconds: number): Promise<JsonLoad> {
  // A scrape resets the gateway's event-loop histogram: the one after the load covers it alone.
  const before = target.metricsUrl === undefined ? undefined : await scrape(target.metricsUrl);
  const cpu0 = cpuOf(target);
  const foreign = foreignCpu();
  const t0 = performance.now();
  const r = await autocannon({
    url: target.url + PATH,
    method: 'POST',
    connections,
    duration: seconds,
    headers: headers(target),
    body: JSON_BODY,
    timeout: 30,
  });
  const wallS = (performance.now() - t0) / 1000;
  const cpu = cpuOf(target) - cpu0;
  const after = target.metricsUrl === undefined ? undefined : await scrape(target.metricsUrl);
  const loop = after?.loop;
  const completed = r.requests.total;
  const gc = before === undefined || after === undefined ? undefined : gcBetween(before, after, completed);
  const other: Record<string, number> = {};
  for (const [code, stat] of Object.entries(r.statusCodeStats ?? {}))
    if (!code.startsWith('2') && stat.count > 0) other[code] = stat.count;
  return {
    rps: r['2xx'] / r.duration,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    p999Ms: r.latency.p99_9,
    ...(loop !== undefined && { loopMaxMs: loop.maxMs, loopP99Ms: loop.p99Ms }),
    ...(gc !== undefined && { gc }),
    completed,
    ok2xx: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    durationS: r.duration,
    cpuUsPerReq: completed > 0 ? cpu / completed : Number.NaN,
    cpuUtil: cpu / 1e6 / wallS,
    foreignCpu: foreign(),
    ...(Object.keys(other).length > 0 ? { statusCodes: other } : {}),
  };
}

export interface LatencyResult {
  readonly medianMs: number;
  readonly p99Ms: number;
  readonly samples: number;
  readonly errors: number;
}

/** `count` sequential JSON requests on one keep-alive connection (after `warmup` unmeasured ones). */
export async function sequentialLatency(target: Target, count: number, warmup = 50): Promise<LatencyResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const samples: number[] = [];
  let errors = 0;
  try {
    for (let i = 0; i < warmup + count; i++) {
      const t0 = process.hrtime.bigint();
      const status = await oneJson(target, agent);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (status !== 200) errors++;
      else if (i >= warmup) samples.push(ms);
    }
  } finally {
    agent.destroy();
  }
  return { medianMs: median(samples), p99Ms: percentile(samples, 99), samples: samples.length, errors };
}

function oneJson(target: Target, agent: Agent): Promise<number> {
  return new Promise((resolve) => {
    const req = request(target.url + PATH, { method: 'POST', agent, headers: headers(target) }, (res) => {
      res.on('data', () => undefined);
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.end(JSON_BODY);
  });
}

export interface StreamOpts {
  readonly chunks: number;
  readonly intervalMs: number;
  /** A keep-alive agent, or false for one fresh connection per stream. */
  readonly agent: Agent | false;
  /** Give up on a stream after this long. */
  readonly timeoutMs?: number;
  readonly onHeaders?: () => void;
  readonly onEnd?: () => void;
}

export interface StreamResult {
  readonly ok: boolean;
  readonly status: number;
  readonly ttftMs: number;
  readonly totalMs: number;
  /** SSE events received (content chunks + `[DONE]`). */
  readonly events: number;
  readonly error: string | undefined;
}

const LFLF = Buffer.from('\n\n');
const DONE = Buffer.from('data: [DONE]');

/** One streamed chat completion; times are client-side from the start of the request. */
export function streamOnce(target: Target, opts: StreamOpts): Promise<StreamResult> {
  const expected = opts.chunks + 1;
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const since = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
    let ttft = Number.NaN;
    let events = 0;
    let prevLf = false;
    let status = 0;
    // The last bytes received: the stream must end with `data: [DONE]`.
    let tail: Buffer = Buffer.alloc(0);
    let settled = false;
    let headersSeen = false;
    const finish = (error: string | undefined): void => {
      if (settled) return;
      settled = true;
      if (headersSeen) opts.onEnd?.();
      const sawDone = tail.includes(DONE);
      const ok = error === undefined && status === 200 && sawDone && events === expected;
      const err = error ?? (ok ? undefined : status !== 200 ? `status ${status}` : 'incomplete stream');
      resolve({ ok, status, ttftMs: ttft, totalMs: since(), events, error: err });
    };
    const url = `${target.url}${PATH}?chunks=${opts.chunks}&interval=${opts.intervalMs}`;
    const req = request(url, { method: 'POST', agent: opts.agent, headers: headers(target) }, (res) => {
      status = res.statusCode ?? 0;
      headersSeen = true;
      opts.onHeaders?.();
      res.on('data', (chunk: Buffer) => {
        if (Number.isNaN(ttft)) ttft = since();
        if (prevLf && chunk[0] === 0x0a) events++;
        for (let at = chunk.indexOf(LFLF); at !== -1; at = chunk.indexOf(LFLF, at + 2)) events++;
        prevLf = chunk[chunk.length - 1] === 0x0a;
        tail = chunk.length >= 32 ? chunk.subarray(-32) : Buffer.concat([tail, chunk]).subarray(-32);
      });
      res.on('end', () => finish(undefined));
      res.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
      res.on('aborted', () => finish('aborted'));
    });
    req.setTimeout(opts.timeoutMs ?? 60_000, () => req.destroy(new Error('client timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    req.end(STREAM_BODY);
  });
}

/**
 * `count` streams, at most `concurrency` at a time. Worker k starts after k × `staggerMs`, so that
 * stream starts do not all coincide (TTFT would otherwise include queueing behind the others).
 */
export async function streamBatch(
  target: Target,
  count: number,
  concurrency: number,
  opts: Omit<StreamOpts, 'agent'> & { staggerMs?: number },
): Promise<StreamResult[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const results: StreamResult[] = [];
  let next = 0;
  let started = 0;
  const worker = async (): Promise<void> => {
    const delay = started++ * (opts.staggerMs ?? 0);
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    while (next < count) {
      next++;
      results.push(await streamOnce(target, { ...opts, agent }));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  } finally {
    agent.destroy();
  }
  return results;
}

export interface BurstResult {
  readonly streams: number;
  readonly failed: number;
  readonly events: number;
  readonly durationS: number;
  /** Proxy CPU per SSE event delivered, µs. */
  readonly cpuUsPerChunk: number;
  readonly cpuUtil: number;
  readonly foreignCpu: number;
}

/** Unpaced streams kept at `concurrency` for `seconds`; proxy CPU divided by events delivered. */
export async function streamBurst(
  target: Target,
  seconds: number,
  concurrency: number,
  chunks: number,
): Promise<BurstResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const stopAt = performance.now() + seconds * 1000;
  let streams = 0;
  let failed = 0;
  let events = 0;
  const cpu0 = cpuOf(target);
  const foreign = foreignCpu();
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (performance.now() < stopAt) {
      const r = await streamOnce(target, { chunks, intervalMs: 0, agent });
      streams++;
      events += r.events;
      if (!r.ok) failed++;
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
  const wallS = (performance.now() - t0) / 1000;
  const cpu = cpuOf(target) - cpu0;
  return {
    streams,
    failed,
    events,
    durationS: wallS,
    cpuUsPerChunk: events > 0 ? cpu / events : Number.NaN,
    cpuUtil: cpu / 1e6 / wallS,
    foreignCpu: foreign(),
  };
}

export interface ManyStreamsResult {
  readonly requested: number;
  readonly ok: number;
  readonly errors: number;
  readonly errorKinds: Record<string, number>;
  readonly peakConcurrent: number;
  readonly durationS: number;
  readonly ttftP50Ms: number;
  readonly ttftP99Ms: number;
}

/** `count` paced streams, each on its own connection, opened `batch` at a time every `tickMs`. */
export async function manyStreams(
  target: Target,
  count: number,
  opts: { chunks: number; intervalMs: number; batch: number; tickMs: number },
): Promise<ManyStreamsResult> {
  let open = 0;
  let peak = 0;
  const t0 = performance.now();
  const pending: Array<Promise<StreamResult>> = [];
  const streamOpts: StreamOpts = {
    chunks: opts.chunks,
    intervalMs: opts.intervalMs,
    agent: false,
    timeoutMs: 120_000,
    onHeaders: () => {
      open++;
      if (open > peak) peak = open;
    },
    onEnd: () => open--,
  };
  for (let i = 0; i < count; i += opts.batch) {
    for (let j = i; j < Math.min(count, i + opts.batch); j++) pending.push(streamOnce(target, streamOpts));
    await new Promise((resolve) => setTimeout(resolve, opts.tickMs));
  }
  const results = await Promise.all(pending);
  const errorKinds: Record<string, number> = {};
  for (const r of results) {
    if (r.ok) continue;
    const kind = r.error ?? 'unknown';
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
  }
  const ttfts = results.filter((r) => r.ok).map((r) => r.ttftMs);
  const okCount = results.filter((r) => r.ok).length;
  return {
    requested: count,
    ok: okCount,
    errors: count - okCount,
    errorKinds,
    peakConcurrent: peak,
    durationS: (performance.now() - t0) / 1000,
    ttftP50Ms: median(ttfts),
    ttftP99Ms: percentile(ttfts, 99),
  };
}
