/**
 * Shared settings of one benchmark run: the measurement plan (full or BENCH_QUICK=1), where logs
 * go, the CPUs each role is pinned to, and the progress log.
 */
import { cpus } from 'node:os';
import { hasTaskset } from './procs.js';

const env = process.env;
/** Every phase, in the order they run; a run of all of them is a complete one. */
export const ALL_PHASES = ['main', 'scale', 'many', 'shared'] as const;
export const QUICK = env['BENCH_QUICK'] === '1';

function int(name: string, fallback: number): number {
  const v = Number(env[name]);
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

export const plan = {
  rounds: int('BENCH_ROUNDS', QUICK ? 1 : 5),
  /** Seconds per 64-connection JSON measurement. */
  jsonSeconds: int('BENCH_DURATION', QUICK ? 3 : 10),
  warmupSeconds: QUICK ? 1 : 2,
  connections: 64,
  latencyRequests: QUICK ? 500 : 3000,
  pacedStreams: QUICK ? 10 : 30,
  pacedConcurrency: 10,
  pacedChunks: 50,
  pacedIntervalMs: 20,
  burstSeconds: QUICK ? 2 : 4,
  burstConcurrency: 32,
  burstChunks: 50,
  /** Pause between measurements so background work (batched writes, GC) does not bleed over. */
  pauseMs: QUICK ? 300 : 1000,
  scale: {
    /** The first is the baseline, the last the target's "large"; the middle two separate the causes. */
    sizes: [
      { label: 'small', keys: 10, accounts: 100 },
      { label: 'keys', keys: QUICK ? 1_000 : 10_000, accounts: 100 },
      { label: 'accounts', keys: 10, accounts: QUICK ? 10_000 : 100_000 },
      { label: 'large', keys: QUICK ? 1_000 : 10_000, accounts: QUICK ? 10_000 : 100_000 },
    ],
    rounds: QUICK ? 1 : 5,
    seconds: QUICK ? 2 : 5,
  },
  many: {
    count: int('BENCH_STREAMS', QUICK ? 1_000 : 10_000),
    // Long enough (20 s) that every stream is still open when the last one starts, even when the
    // load generator, which shares a core with the mock, opens them slower than 1,000/s.
    chunks: QUICK ? 10 : 25,
    intervalMs: 800,
    // Opening rate: 1,000 new streams/s (50 every 50 ms).
    batch: 50,
    tickMs: 50,
  },
  shared: {
    /** Connections of each of the two shared instances (together the usual 64). */
    connectionsEach: 32,
    /** Rounds of one instance against two (at most 3: no target depends on them). */
    twoInstanceRounds: Math.min(int('BENCH_ROUNDS', QUICK ? 1 : 5), 3),
    /** Round-trip count: idle window (background rate) and load, seconds. */
    idleSeconds: QUICK ? 2 : 10,
    countSeconds: QUICK ? 2 : 10,
    /**
     * PostgreSQL transactions are counted in full mode only: a backend that went idle reports them
     * to pg_stat_database up to 10 s late, so each count waits 11 s.
     */
    countPostgres: !QUICK,
    settleSeconds: 11,
    /** RateLimit of the diagnostic account that takes the Redis limiter (below its local cut-off). */
    finiteRateLimit: 999_999,
  },
  phases: new Set((env['BENCH_PHASES'] ?? ALL_PHASES.join(',')).split(',').map((s) => s.trim())),
  skipBuild: env['BENCH_SKIP_BUILD'] === '1',
  /** Names the results file (`<date>-<label>.json`); a labelled run leaves BENCHMARKS.md alone. */
  label: (env['BENCH_LABEL'] ?? '').replace(/[^\w.-]/g, ''),
};

/** CPU of the mock upstream and the load generator, and of the proxy under test. */
export const CPU_LOAD = hasTaskset && cpus().length >= 2 ? 0 : undefined;
export const CPU_PROXY = hasTaskset && cpus().length >= 2 ? 1 : undefined;

const t0 = Date.now();
export function log(msg: string): void {
  process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}
