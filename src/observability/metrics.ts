/**
 * Prometheus metrics on a registry owned by the app (no global default registry), exposed at
 * GET /metrics. Labels never carry keys, account names or emails: only routes, statuses,
 * outcomes, price-table models and pool keys by id and last four characters (metric-labels.ts).
 *
 * Everything counted per request or per attempt is kept in plain numbers in memory and copied
 * into prom-client when /metrics is scraped: prom-client builds a label hash on every `inc()` or
 * `observe()`, which the profile showed at ≈ 1 µs per request for three counters. The hot path
 * costs a Map lookup or two per count. Gauges of live state (reservations, the writer's queue)
 * are read at scrape time, so nothing keeps them up to date between scrapes.
 *
 * One file although just over 400 lines: every metric is declared next to the plain counter its
 * scrape copies from, and those pairs are the file.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { SettlementWriter } from '../billing/meter.js';
import type { PriceTable } from '../billing/price-table.js';
import { GatewayError } from '../errors/catalogue.js';
import type { KeyState } from '../keys/key-state.js';
import type { BatchSink, UsageRow } from '../store/batch-sink.js';
import type { AttemptObserver } from '../upstream/send-with-retry.js';
import { keyLabel, modelLabel, outcomeLabel } from './metric-labels.js';
import { Buckets, scrapeHistogram } from './scrape-histogram.js';

/** Live state read at each scrape (`Metrics.attach`). */
export interface ScrapeSources {
  /** Every account in memory: their `reserved` micros are summed, O(accounts) per scrape. */
  readonly accounts: { all(): Iterable<{ readonly reserved: number }> };
  readonly writer: { readonly queuedRows: number; readonly failedFlushes: number };
  /** The upstream key pool, counted by status at each scrape. */
  readonly keys: { list(): Iterable<{ readonly status: KeyStatus }> };
}

type KeyStatus = KeyState['kind'];

export interface Metrics {
  readonly registry: Registry;
  /** One answered proxied request, by how it ended and its HTTP status. */
  countRequest(kind: string, status: number): void;
  /** One upstream attempt, by classified outcome. */
  countAttempt(outcome: string): void;
  /** Micro-dollars charged for usage. */
  countCharged(micros: number): void;
  readonly upstreamKeys: Gauge<'status'>;
  /** One answered proxied request: seconds from its start to the last byte sent, by how it ended. */
  observeDuration(kind: string, seconds: number): void;
  /** Realtime (WebSocket) sessions open now. */
  readonly realtimeSessions: Gauge;
  /** One realtime response or transcription settled, by how it ended. */
  countRealtimeResponse(outcome: string): void;
  /**
   * One usage row the gateway wrote (settled, or refused at the gates): requests, tokens, spend
   * and time to first byte. `model` is the row's label, already folded (`modelLabel`).
   */
  observeUsage(row: UsageRow, model: string): void;
  /** One upstream attempt of `sendWithRetry`: by pool key, outcome and time to upstream's answer. */
  readonly observeAttempt: AttemptObserver;
  /** One write of the state writer's batch to the store, and whether it succeeded. */
  observeFlush(seconds: number, ok: boolean): void;
  /** Gives the gauges of live state their sources (once they exist: metrics are made first). */
  attach(sources: ScrapeSources): void;
}

/** Seconds. Upstream answers take from tens of milliseconds (small chats) to minutes (reasoning). */
const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Seconds. One transaction of a batch of rows: milliseconds, seconds when the store struggles. */
const FLUSH_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds. A whole proxied request, from a cache-speed answer to a long stream. */
const DURATION_BUCKETS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 120];

interface UsageTotals {
  requests: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  spend: number;
}

interface KeyTotals {
  readonly labels: { readonly key_id: string; readonly key: string };
  readonly outcomes: Map<string, number>;
  failures: number;
  readonly latency: Buckets;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  // Includes nodejs_eventloop_lag_{p50,p90,p99,max,...}_seconds from monitorEventLoopDelay,
  // reset at each scrape: the event-loop delay panels read those.
  collectDefaultMetrics({ register: registry, prefix: 'proxyxai_' });
  // kind → status → count; attempts by outcome; charged total.
  const requests = new Map<string, Map<number, number>>();
  const attempts = new Map<string, number>();
  const realtimeResponses = new Map<string, number>();
  let charged = 0;
  // model label → outcome label → totals (model labels are bounded by the price table).
  const usage = new Map<string, Map<string, UsageTotals>>();
  // Index 0: not streamed, 1: streamed (the row's `stream` column).
  const ttfb = [new Buckets(LATENCY_BUCKETS), new Buckets(LATENCY_BUCKETS)] as const;
  const keys = new Map<number, KeyTotals>();
  const flushes = { ok: new Buckets(FLUSH_BUCKETS), error: new Buckets(FLUSH_BUCKETS) };
  // By kind. Counted here and read at each scrape, like the others: prom-client's labelled
  // `observe` hashed its labels into a new string on every request (≈ 1 % of the event loop).
  const durations = new Map<string, { readonly labels: { readonly kind: string }; readonly b: Buckets }>();
  let sources: ScrapeSources | undefined;

  new Counter({
    name: 'proxyxai_requests_total',
    help: 'Requests answered by the gateway',
    labelNames: ['kind', 'status'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [kind, byStatus] of requests)
        for (const [status, n] of byStatus) this.inc({ kind, status: String(status) }, n);
    },
  });
  new Counter({
    name: 'proxyxai_upstream_attempts_total',
    help: 'Upstream attempts by classified outcome',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [outcome, n] of attempts) this.inc({ outcome }, n);
    },
  });
  new Counter({
    name: 'proxyxai_charged_micros_total',
    help: 'Micro-dollars charged to accounts for usage',
    registers: [registry],
    collect() {
      this.reset();
      if (charged > 0) this.inc(charged);
    },
  });
  new Counter({
    name: 'proxyxai_realtime_responses_total',
    help: 'Realtime responses and transcriptions settled, by how they ended',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [outcome, n] of realtimeResponses) this.inc({ outcome }, n);
    },
  });

  const eachUsage = function* (): Generator<readonly [{ model: string; outcome: string }, UsageTotals]> {
    for (const [model, byOutcome] of usage)
      for (const [outcome, t] of byOutcome) yield [{ model, outcome }, t] as const;
  };
  new Counter({
    name: 'proxyxai_usage_requests_total',
    help: 'Usage rows written (requests settled or refused at the gates), by price-table model and outcome',
    labelNames: ['model', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, t] of eachUsage()) this.inc(labels, t.requests);
    },
  });
  new Counter({
    name: 'proxyxai_usage_tokens_total',
    help: 'Tokens billed, by price-table model, outcome and type (cached tokens are part of prompt)',
    labelNames: ['model', 'outcome', 'type'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, t] of eachUsage()) {
        this.inc({ ...labels, type: 'prompt' }, t.promptTokens);
        this.inc({ ...labels, type: 'completion' }, t.completionTokens);
        this.inc({ ...labels, type: 'cached' }, t.cachedTokens);
      }
    },
  });
  new Counter({
    name: 'proxyxai_usage_spend_micros_total',
    help: 'Micro-dollars charged to accounts, by price-table model and outcome',
    labelNames: ['model', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, t] of eachUsage()) this.inc(labels, t.spend);
    },
  });
  scrapeHistogram(
    registry,
    {
      name: 'proxyxai_ttfb_seconds',
      help: "Time from a request's arrival to the first byte of its answer's body",
      labelNames: ['stream'],
    },
    () => [
      [{ stream: 'false' }, ttfb[0]],
      [{ stream: 'true' }, ttfb[1]],
    ],
  );

  new Counter({
    name: 'proxyxai_upstream_key_attempts_total',
    help: 'Upstream attempts by pool key (id and last four characters) and classified outcome',
    labelNames: ['key_id', 'key', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const k of keys.values())
        for (const [outcome, n] of k.outcomes) this.inc({ ...k.labels, outcome }, n);
    },
  });
  new Counter({
    name: 'proxyxai_upstream_key_failures_total',
    help: 'Failed upstream attempts (5xx, network, 429/403, quota, invalid key) by pool key',
    labelNames: ['key_id', 'key'],
    registers: [registry],
    collect() {
      this.reset();
      for (const k of keys.values()) this.inc(k.labels, k.failures);
    },
  });
  scrapeHistogram(
    registry,
    {
      name: 'proxyxai_upstream_key_latency_seconds',
      help: "Time from sending an attempt to upstream's response headers (or its failure), by pool key",
      labelNames: ['key_id', 'key'],
    },
    () => [...keys.values()].map((k) => [k.labels, k.latency] as const),
  );

  new Gauge({
    name: 'proxyxai_reserved_micros',
    help: 'Micro-dollars held by reservations of requests and work in progress (this instance)',
    registers: [registry],
    collect() {
      let total = 0;
      if (sources !== undefined) for (const a of sources.accounts.all()) total += a.reserved;
      this.set(total);
    },
  });
  new Gauge({
    name: 'proxyxai_reserving_accounts',
    help: 'Accounts holding a reservation now (this instance)',
    registers: [registry],
    collect() {
      let n = 0;
      if (sources !== undefined) for (const a of sources.accounts.all()) if (a.reserved > 0) n++;
      this.set(n);
    },
  });
  new Gauge({
    name: 'proxyxai_writer_queued_rows',
    help: 'Ledger and usage rows waiting for the next write to the store (refusals start at MAX backlog)',
    registers: [registry],
    collect() {
      this.set(sources?.writer.queuedRows ?? 0);
    },
  });
  new Gauge({
    name: 'proxyxai_writer_failed_flushes',
    help: 'Consecutive failed writes to the store (0 once one succeeds)',
    registers: [registry],
    collect() {
      this.set(sources?.writer.failedFlushes ?? 0);
    },
  });
  scrapeHistogram(
    registry,
    {
      name: 'proxyxai_writer_flush_duration_seconds',
      help: 'Time to write one batch of the state writer to the store, by result',
      labelNames: ['result'],
    },
    () => [
      [{ result: 'ok' }, flushes.ok],
      [{ result: 'error' }, flushes.error],
    ],
  );

  scrapeHistogram(
    registry,
    {
      name: 'proxyxai_request_duration_seconds',
      help: 'Time from request start to the last byte sent',
      labelNames: ['kind'],
    },
    () => [...durations.values()].map((d) => [d.labels, d.b] as const),
  );

  return {
    registry,
    countRequest(kind, status) {
      let byStatus = requests.get(kind);
      if (byStatus === undefined) requests.set(kind, (byStatus = new Map()));
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    },
    countAttempt(outcome) {
      attempts.set(outcome, (attempts.get(outcome) ?? 0) + 1);
    },
    countCharged(micros) {
      charged += micros;
    },
    countRealtimeResponse(outcome) {
      realtimeResponses.set(outcome, (realtimeResponses.get(outcome) ?? 0) + 1);
    },
    observeUsage(row, model) {
      let byOutcome = usage.get(model);
      if (byOutcome === undefined) usage.set(model, (byOutcome = new Map()));
      const outcome = outcomeLabel(row.outcome);
      let t = byOutcome.get(outcome);
      if (t === undefined) {
        t = { requests: 0, promptTokens: 0, completionTokens: 0, cachedTokens: 0, spend: 0 };
        byOutcome.set(outcome, t);
      }
      t.requests++;
      t.promptTokens += row.prompt_tokens;
      t.completionTokens += row.completion_tokens;
      t.cachedTokens += row.cached_tokens;
      t.spend += row.cost;
      if (row.ttfb_ms !== null) ttfb[row.stream === 1 ? 1 : 0].observe(row.ttfb_ms / 1000);
    },
    observeAttempt(key, outcome, ms) {
      let k = keys.get(key.id);
      if (k === undefined) {
        k = {
          labels: { key_id: String(key.id), key: keyLabel(key.last4) },
          outcomes: new Map(),
          failures: 0,
          latency: new Buckets(LATENCY_BUCKETS),
        };
        keys.set(key.id, k);
      }
      k.outcomes.set(outcome.kind, (k.outcomes.get(outcome.kind) ?? 0) + 1);
      // A failure as the pool counts it: the client's own 4xx says nothing about the key.
      if (outcome.kind !== 'ok' && outcome.kind !== 'client-error') k.failures++;
      k.latency.observe(ms / 1000);
    },
    observeDuration(kind, seconds) {
      let d = durations.get(kind);
      if (d === undefined) durations.set(kind, (d = { labels: { kind }, b: new Buckets(DURATION_BUCKETS) }));
      d.b.observe(seconds);
    },
    observeFlush(seconds, ok) {
      (ok ? flushes.ok : flushes.error).observe(seconds);
    },
    attach(s) {
      sources = s;
    },
    upstreamKeys: new Gauge({
      name: 'proxyxai_upstream_keys',
      help: 'Upstream keys in the pool by status',
      labelNames: ['status'],
      registers: [registry],
      // Counted at the scrape once attached (before: what the app's 10 s timer last set).
      collect() {
        if (sources === undefined) return;
        const counts: Record<KeyStatus, number> = { active: 0, cooling: 0, parked: 0, disabled: 0 };
        for (const k of sources.keys.list()) counts[k.status]++;
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
    }),
    realtimeSessions: new Gauge({
      name: 'proxyxai_realtime_sessions',
      help: 'Realtime (WebSocket) sessions open now',
      registers: [registry],
    }),
  };
}

/**
 * The writer the Meter gets: `writer` itself, with every usage row also counted in `metrics`.
 * Every row the gateway bills or refuses passes through the Meter's writer, so the counters equal
 * the request log (usage_records), rows replayed from the journal at start included.
 */
export function countUsage(
  writer: SettlementWriter,
  metrics: Metrics,
  prices: Pick<PriceTable, 'lookup'>,
): SettlementWriter {
  return {
    markDirty: (account) => writer.markDirty(account),
    addLedger: (row) => writer.addLedger(row),
    addUsage: (row) => {
      writer.addUsage(row);
      metrics.observeUsage(row, modelLabel(prices, row.model));
    },
    backlogged: () => writer.backlogged(),
  };
}

/** The sink the state writer gets: `sink` itself, each write timed into `metrics`. */
export function timedSink(sink: BatchSink, metrics: Metrics): BatchSink {
  return {
    async write(batch) {
      const started = performance.now();
      try {
        await sink.write(batch);
        metrics.observeFlush((performance.now() - started) / 1000, true);
      } catch (err: unknown) {
        metrics.observeFlush((performance.now() - started) / 1000, false);
        throw err;
      }
    },
  };
}

/**
 * Why GET /metrics is refused, or undefined when it may be served: with METRICS_TOKEN set, the
 * request must carry `Authorization: Bearer <token>`. Both sides are hashed first so the
 * comparison takes the same time whatever was sent (timingSafeEqual needs equal lengths).
 */
export function metricsRefusal(
  token: string | undefined,
  authorization: string | undefined,
): GatewayError | undefined {
  if (token === undefined) return undefined;
  const given = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1]?.trim() ?? '';
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
  if (given !== '' && timingSafeEqual(digest(given), digest(token))) return undefined;
  return new GatewayError('metrics_token_required', undefined, null, {
    'www-authenticate': 'Bearer realm="metrics"',
  });
}
