/**
 * The shared-mode phase: one gateway on PostgreSQL + Redis (`POSTGRES_DSN` and `REDIS_ADDR` set,
 * the run's common MASTER_KEY) against the embedded (SQLite) gateway and the reference proxy, with
 * the main phase's measurements in interleaved rounds (embedded and shared always back to back, so
 * their ratios are paired per round); then the store round trips of a request counted on the
 * servers; then two shared instances on the same database and Redis behind the load generator.
 *
 * Isolation: the phase creates its OWN database on the PostgreSQL server and starts its OWN
 * redis-server on a free loopback port; both go away at the end, on errors and on Ctrl-C (the
 * machine's Redis and every other database are never touched). Without a usable PostgreSQL or a
 * redis-server on the PATH the phase is skipped with a note (the run goes on).
 */
import { startReference } from './servers.js';
import { CPU_LOAD, CPU_PROXY, log, plan } from './context.js';
import {
  createSubAccount,
  heapStats,
  startGateway,
  stopGateway,
  updateSubAccount,
  type Gateway,
} from './gateway.js';
import { JSON_BODY, jsonLoad, sequentialLatency, streamBurst, type JsonLoad, type Target } from './load.js';
import { paced, showBurst, showJson } from './main-phase.js';
import {
  adminUrlFromEnv,
  backendPids,
  benchDatabases,
  createBenchDatabase,
  describeUrl,
  transactionCount,
  unavailableReason,
  type BenchDatabase,
} from './postgres.js';
import {
  addPidSource,
  cpuBetween,
  cpuSnapshot,
  interrupted,
  logTail,
  memInfo,
  quietly,
  sleep,
  stopProc,
  tempDir,
  type Proc,
} from './procs.js';
import { commandCounts, redisUnavailableReason, startBenchRedis, type BenchRedis } from './redis-server.js';
import type { Results } from './results.js';
import {
  sharedFailures,
  summariseShared,
  summariseTwoInstances,
  type RoundTripCount,
  type RoundTrips,
  type Served,
  type SharedResults,
  type SharedRound,
  type TwoInstanceRound,
  type TwoInstances,
} from './shared-results.js';
import { round } from './stats.js';

const PINNING =
  CPU_PROXY === undefined
    ? 'No CPU pinning (taskset unavailable or fewer than 2 CPUs).'
    : `Reference, embedded and shared gateways pinned to CPU ${CPU_PROXY} (one under load at a time); redis-server ` +
      `pinned to CPU ${String(CPU_LOAD)} with the mock and the load generator; PostgreSQL (the machine's server) is not pinned.`;

/** Everything the phase started, so that an error stops it before the database is dropped. */
interface Started {
  readonly procs: Proc[];
  readonly gateways: Gateway[];
}

export async function sharedPhase(
  res: Results,
  mockUrl: string,
  refJs: string,
  logDir: string,
): Promise<void> {
  const sh: SharedResults = { rounds: [], pinning: PINNING };
  res.shared = sh;
  const skip = (why: string): void => {
    sh.skipped = why;
    const note = `Shared-mode phase skipped: ${why}.`;
    res.notes.push(note);
    log(note);
  };
  const adminUrl = adminUrlFromEnv();
  if (adminUrl === undefined) return skip('BENCH_POSTGRES=off');
  const noRedis = redisUnavailableReason();
  if (noRedis !== undefined) return skip(noRedis);
  const noPostgres = await unavailableReason(adminUrl);
  if (noPostgres !== undefined)
    return skip(`no usable PostgreSQL at ${describeUrl(adminUrl)} (${noPostgres})`);

  const leftovers = await benchDatabases(adminUrl).catch(() => []);
  if (leftovers.length > 0) {
    const note =
      `PostgreSQL already held ${leftovers.length} database(s) named like the benchmark's (${leftovers.join(', ')}): ` +
      'left by a killed run, or in use by another one. This run did not touch them; drop stale ones by hand.';
    res.notes.push(note);
    log(`shared: ${note}`);
  }
  let db: BenchDatabase;
  try {
    db = await createBenchDatabase(adminUrl);
  } catch (err: unknown) {
    return skip(`could not create a database on ${describeUrl(adminUrl)} (${messageOf(err)})`);
  }
  let redis: BenchRedis | undefined;
  const started: Started = { procs: [], gateways: [] };
  let removePids: (() => void) | undefined;
  try {
    try {
      redis = await startBenchRedis(CPU_LOAD);
    } catch (err: unknown) {
      return skip(`could not start a private redis-server (${messageOf(err)})`);
    }
    sh.database = db.name;
    sh.redisVersion = redis.version;
    log(`shared: database ${db.name}, redis-server ${redis.version} pid ${redis.pid} on ${redis.addr}`);
    // The store's processes work for the gateway: their CPU is ours, not other processes' noise.
    const storeRedis = redis;
    const storePids = (): number[] => [storeRedis.pid, ...backendPids(db.name)];
    removePids = addPidSource(storePids);
    await measure(sh, { mockUrl, refJs, logDir, db, redis, adminUrl, storePids, started });
  } catch (err: unknown) {
    // Interrupted: the failure is the teardown's doing; the clean-ups run from procs.ts.
    if (interrupted()) throw err;
    sh.error = messageOf(err);
    res.notes.push(`The shared-mode phase failed: ${sh.error}`);
    log(`shared: FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    for (const p of started.procs) log(`${p.name} log tail:\n${logTail(p)}`);
  } finally {
    removePids?.();
    for (const p of started.procs) await stopProc(p, 5_000);
    await redis?.stop();
    await db.drop();
    sh.cleanup = `database ${db.name} dropped${redis !== undefined ? ', private redis-server stopped' : ''}`;
    log(`shared: ${sh.cleanup}`);
  }
  const failed = sharedFailures(sh);
  if (failed !== undefined) res.notes.push(failed);
  if (sh.rounds.length > 0) sh.summary = summariseShared(sh);
  if (sh.twoInstances !== undefined && sh.twoInstances.rounds.length > 0)
    sh.twoInstances.summary = summariseTwoInstances(sh.twoInstances);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface Ctx {
  readonly mockUrl: string;
  readonly refJs: string;
  readonly logDir: string;
  readonly db: BenchDatabase;
  readonly redis: BenchRedis;
  readonly adminUrl: string;
  readonly storePids: () => number[];
  readonly started: Started;
}

async function startShared(ctx: Ctx, name: string): Promise<Gateway> {
  const gw = await startGateway({
    name,
    dataDir: tempDir(`proxyxai-bench-${name}-`),
    mockUrl: ctx.mockUrl,
    cpu: CPU_PROXY,
    logDir: ctx.logDir,
    env: { POSTGRES_DSN: ctx.db.dsn, REDIS_ADDR: ctx.redis.addr },
  });
  ctx.started.procs.push(gw.proc);
  ctx.started.gateways.push(gw);
  return gw;
}

/** Runs `load` and also returns the CPU (µs) the store's processes used meanwhile. */
async function withStoreCpu<T>(ctx: Ctx, load: () => Promise<T>): Promise<{ value: T; storeUs: number }> {
  const before = cpuSnapshot(ctx.storePids());
  const value = await load();
  return { value, storeUs: cpuBetween(before, cpuSnapshot(ctx.storePids())) };
}

async function measure(sh: SharedResults, ctx: Ctx): Promise<void> {
  const { proc: ref, url: refUrl } = await startReference(
    ctx.refJs,
    ctx.mockUrl,
    ctx.logDir,
    'shared-phase-reference',
  );
  ctx.started.procs.push(ref);
  const embedded = await startGateway({
    name: 'shared-phase-embedded',
    dataDir: tempDir('proxyxai-bench-embedded-'),
    mockUrl: ctx.mockUrl,
    cpu: CPU_PROXY,
    logDir: ctx.logDir,
  });
  ctx.started.procs.push(embedded.proc);
  const shared = await startShared(ctx, 'shared-1');
  const embeddedSub = await createSubAccount(embedded, 'benchembedded');
  // The shared gateway makes its own sub-account through its own API (written to PostgreSQL).
  const sharedSub = await createSubAccount(shared, 'benchshared');
  if (embeddedSub.rootFallback || sharedSub.rootFallback)
    throw new Error(`no sub-account: ${embeddedSub.rootFallback ? embeddedSub.note : sharedSub.note}`);
  sh.subAccount = `${sharedSub.note} on the shared gateway (CreditGranted 1,000,000: leases never run dry)`;
  log(
    `shared: reference pid ${ref.pid}, embedded pid ${embedded.proc.pid}, shared pid ${shared.proc.pid}; ${sh.subAccount}`,
  );

  const T: Record<'direct' | Served, Target> = {
    direct: { name: 'direct', url: ctx.mockUrl, key: 'sk-direct', pid: undefined },
    reference: { name: 'reference', url: refUrl, key: embeddedSub.key, pid: ref.pid },
    embedded: { name: 'embedded', url: embedded.url, key: embeddedSub.key, pid: embedded.proc.pid },
    shared: { name: 'shared', url: shared.url, key: sharedSub.key, pid: shared.proc.pid },
  };

  log('shared: warm-up');
  for (const w of ['reference', 'embedded', 'shared'] as const) {
    const j = await jsonLoad(T[w], plan.connections, plan.warmupSeconds);
    if (j.ok2xx === 0) throw new Error(`warm-up against ${w} got no 2xx answer (${j.non2xx} non-2xx)`);
    await streamBurst(T[w], plan.warmupSeconds, plan.burstConcurrency, plan.burstChunks);
    await sequentialLatency(T[w], 200);
  }
  await sleep(plan.pauseMs);

  for (let r = 1; r <= plan.rounds; r++) {
    // Embedded and shared are always neighbours; the order flips every round.
    const order: readonly Served[] =
      r % 2 === 1 ? ['reference', 'embedded', 'shared'] : ['shared', 'embedded', 'reference'];
    const rd: SharedRound = { round: r, order, json: {}, latency: {}, paced: {}, burst: {} };
    sh.rounds.push(rd);
    for (const w of order) {
      const { value, storeUs } = await quietly(`shared-phase json ${w}`, () =>
        withStoreCpu(ctx, () => jsonLoad(T[w], plan.connections, plan.jsonSeconds)),
      );
      rd.json[w] = value;
      if (w === 'shared') rd.storeCpuUsPerReq = value.completed > 0 ? storeUs / value.completed : NaN;
      log(`shared round ${r} json ${w.padEnd(9)}: ${showJson(value)}`);
      await sleep(plan.pauseMs);
    }
    for (const w of ['direct', ...order] as const) {
      const l = await quietly(`shared-phase 1-conn ${w}`, () =>
        sequentialLatency(T[w], plan.latencyRequests),
      );
      rd.latency[w] = l;
      log(
        `shared round ${r} 1-conn ${w.padEnd(9)}: median ${round(l.medianMs, 3)} ms, p99 ${round(l.p99Ms, 3)} ms${l.errors > 0 ? `, ${l.errors} errors` : ''}`,
      );
    }
    await sleep(plan.pauseMs);
    for (const w of ['direct', ...order] as const) {
      const p = await quietly(`shared-phase paced ${w}`, () => paced(T[w]));
      rd.paced[w] = p;
      log(
        `shared round ${r} paced  ${w.padEnd(9)}: TTFT ${round(p.ttftMedianMs, 3)} ms, total ${round(p.totalMedianMs, 1)} ms${p.failed > 0 ? `, ${p.failed} FAILED` : ''}`,
      );
    }
    await sleep(plan.pauseMs);
    for (const w of order) {
      const { value, storeUs } = await quietly(`shared-phase burst ${w}`, () =>
        withStoreCpu(ctx, () =>
          streamBurst(T[w], plan.burstSeconds, plan.burstConcurrency, plan.burstChunks),
        ),
      );
      rd.burst[w] = value;
      if (w === 'shared') rd.storeCpuUsPerChunk = value.events > 0 ? storeUs / value.events : NaN;
      log(`shared round ${r} burst  ${w.padEnd(9)}: ${showBurst(value)}`);
      await sleep(plan.pauseMs);
    }
  }
  const mem = (pid: number): { hwmKb: number; rssKb: number } => {
    const m = memInfo(pid);
    return { hwmKb: m.hwmKb, rssKb: m.rssKb };
  };
  sh.rss = { reference: mem(ref.pid), embedded: mem(embedded.proc.pid), shared: mem(shared.proc.pid) };
  sh.heap = { embedded: await heapStats(embedded), shared: await heapStats(shared) };
  log(
    `shared: peak RSS (VmHWM) reference ${round(sh.rss.reference!.hwmKb / 1024, 1)} MB, embedded ` +
      `${round(sh.rss.embedded!.hwmKb / 1024, 1)} MB, shared ${round(sh.rss.shared!.hwmKb / 1024, 1)} MB`,
  );
  await stopProc(ref);
  const code = await stopGateway(embedded);
  if (code !== 0) log(`shared: the embedded gateway exited with code ${String(code)} on SIGTERM`);

  sh.roundTrips = await countRoundTrips(ctx, shared, T.shared);
  await twoInstances(sh, ctx, shared, T.shared);

  const codes = [];
  for (const gw of ctx.started.gateways) codes.push(await stopGateway(gw));
  if (codes.some((c) => c !== 0))
    throw new Error(`a shared gateway exited with code(s) ${codes.join(', ')} on SIGTERM`);
}

/**
 * How many Redis commands and PostgreSQL transactions a request costs on the shared gateway:
 * counters read on the servers around a JSON load, minus the idle rate of a quiet window (in full
 * mode also PostgreSQL's, read after a settle time since a backend reports its transactions up to
 * 10 s late). Once with the benchmark's account (RateLimit inherited from root: decided in memory),
 * once with an account whose finite RateLimit goes through the Redis limiter, each followed by the
 * 1-connection latency, so that the cost of that round trip shows.
 */
async function countRoundTrips(ctx: Ctx, shared: Gateway, target: Target): Promise<RoundTrips> {
  const cfg = plan.shared;
  const limitedSub = await createSubAccount(shared, 'benchlimited');
  if (limitedSub.rootFallback) throw new Error(`no sub-account for the round-trip count: ${limitedSub.note}`);
  await updateSubAccount(shared, 'benchlimited', { RateLimit: cfg.finiteRateLimit });
  const limitedTarget: Target = { ...target, key: limitedSub.key };
  // The gateway must decide this account's RPM with the finite limit (the Redis limiter).
  const seen = await rateLimitHeader(limitedTarget);
  if (seen !== String(cfg.finiteRateLimit))
    throw new Error(
      `the account with RateLimit ${cfg.finiteRateLimit} is answered with x-ratelimit-limit-requests ${String(seen)}`,
    );
  // A first load leases credit for the new account; the count is about an account in use.
  const first = await jsonLoad(limitedTarget, 4, 1);
  if (first.ok2xx === 0) throw new Error(`the limited account got no 2xx answer (${first.non2xx} non-2xx)`);
  await sleep(cfg.countPostgres ? cfg.settleSeconds * 1000 : plan.pauseMs);

  const diff = (a: Record<string, number>, b: Record<string, number>): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const [cmd, n] of Object.entries(b))
      if (cmd !== 'info' && n - (a[cmd] ?? 0) > 0) out[cmd] = n - (a[cmd] ?? 0);
    return out;
  };
  const total = (c: Record<string, number>): number => Object.values(c).reduce((a, n) => a + n, 0);
  // INFO commandstats also counts the commands a Lua script runs inside the server; the script
  // calls themselves are the round trips a script costs.
  const SCRIPT_CALLS = ['evalsha', 'eval', 'evalsha_ro', 'eval_ro', 'fcall', 'fcall_ro'];
  const scripts = (c: Record<string, number>): number =>
    SCRIPT_CALLS.reduce((a, cmd) => a + (c[cmd] ?? 0), 0);
  const port = ctx.redis.port;
  const xacts = (): Promise<number> =>
    cfg.countPostgres ? transactionCount(ctx.adminUrl, ctx.db.name) : Promise.resolve(NaN);

  // Idle rates first (nothing pending: the settle time above has passed).
  const idleR0 = await commandCounts(port);
  const idleP0 = await xacts();
  const t0 = performance.now();
  await sleep(cfg.idleSeconds * 1000);
  const idleR1 = await commandCounts(port);
  const idleP1 = await xacts();
  const idleS = (performance.now() - t0) / 1000;
  const idleCalls = diff(idleR0, idleR1);
  const idleRedisPerSecond = total(idleCalls) / idleS;
  const idleScriptsPerSecond = scripts(idleCalls) / idleS;
  const idlePostgresPerSecond = (idleP1 - idleP0) / idleS;
  log(
    `shared round trips: idle ${round(idleRedisPerSecond, 1)} Redis commands/s ${JSON.stringify(idleCalls)}` +
      (cfg.countPostgres ? `, ${round(idlePostgresPerSecond, 2)} PostgreSQL transactions/s` : ''),
  );

  const count = async (t: Target, account: string): Promise<RoundTripCount> => {
    const r0 = await commandCounts(port);
    const p0 = await xacts();
    const w0 = performance.now();
    const j: JsonLoad = await quietly(`round trips ${account}`, () =>
      jsonLoad(t, plan.connections, cfg.countSeconds),
    );
    const r1 = await commandCounts(port);
    const loadS = (performance.now() - w0) / 1000;
    const redisCalls = diff(r0, r1);
    let postgres: { postgresTransactions: number; postgresPerThousand: number } | undefined;
    if (cfg.countPostgres) {
      await sleep(cfg.settleSeconds * 1000);
      const p1 = await xacts();
      const windowS = (performance.now() - w0) / 1000;
      postgres = {
        postgresTransactions: p1 - p0,
        postgresPerThousand: ((p1 - p0 - idlePostgresPerSecond * windowS) / Math.max(1, j.completed)) * 1000,
      };
    }
    await sleep(plan.pauseMs);
    const lat = await quietly(`round trips 1-conn ${account}`, () =>
      sequentialLatency(t, plan.latencyRequests),
    );
    const out: RoundTripCount = {
      account,
      seconds: cfg.countSeconds,
      requests: j.completed,
      rps: j.rps,
      cpuUsPerReq: j.cpuUsPerReq,
      non2xx: j.non2xx + j.errors,
      ...(j.statusCodes !== undefined ? { statusCodes: j.statusCodes } : {}),
      redisCalls,
      redisPerRequest: (total(redisCalls) - idleRedisPerSecond * loadS) / Math.max(1, j.completed),
      redisScriptsPerRequest: (scripts(redisCalls) - idleScriptsPerSecond * loadS) / Math.max(1, j.completed),
      latency1Ms: lat.medianMs,
      ...postgres,
    };
    log(
      `shared round trips, ${account}: ${j.completed} requests (${round(j.rps, 0)} req/s, ${round(j.cpuUsPerReq, 1)} µs CPU/req` +
        `${j.non2xx + j.errors > 0 ? `, ${j.non2xx} non-2xx ${JSON.stringify(j.statusCodes ?? {})}, ${j.errors} errors` : ''}), Redis ${round(out.redisPerRequest, 3)} commands ` +
        `(${round(out.redisScriptsPerRequest ?? NaN, 3)} script calls)/request ` +
        `${JSON.stringify(redisCalls)}` +
        (postgres === undefined
          ? ''
          : `, PostgreSQL ${postgres.postgresTransactions} transactions, ${round(postgres.postgresPerThousand, 2)} per 1,000 requests above idle`) +
        `; 1-connection median ${round(lat.medianMs, 3)} ms`,
    );
    return out;
  };
  const unlimited = await count(target, 'RateLimit inherited from root (6,666,666, decided in memory)');
  await sleep(plan.pauseMs);
  const limited = await count(
    limitedTarget,
    `RateLimit ${cfg.finiteRateLimit.toLocaleString('en-US')} (finite: the Redis limiter)`,
  );
  return {
    idleSeconds: round(idleS, 1),
    idleRedisPerSecond,
    idleRedisCalls: idleCalls,
    ...(cfg.countPostgres ? { settleSeconds: cfg.settleSeconds, idlePostgresPerSecond } : {}),
    unlimited,
    limited,
  };
}

/** The `x-ratelimit-limit-requests` header of one chat completion answered 200 (else undefined). */
async function rateLimitHeader(t: Target): Promise<string | undefined> {
  const res = await fetch(`${t.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
    body: JSON_BODY,
    signal: AbortSignal.timeout(10_000),
  });
  await res.arrayBuffer();
  return res.status === 200 ? (res.headers.get('x-ratelimit-limit-requests') ?? undefined) : undefined;
}

/** A second shared instance on the same database and Redis; 32 + 32 connections against 64 on one. */
async function twoInstances(sh: SharedResults, ctx: Ctx, first: Gateway, target: Target): Promise<void> {
  const second = await startShared(ctx, 'shared-2');
  const pinning =
    CPU_PROXY === undefined
      ? 'no CPU pinning'
      : `both pinned to CPU ${CPU_PROXY}, so they share the one core the single instance has (the machine has 2 ` +
        'cores and the other runs the mock and the load generator): this shows what splitting the load costs, not scaling';
  const t: TwoInstances = { connectionsEach: plan.shared.connectionsEach, pinning, rounds: [] };
  sh.twoInstances = t;
  const T2: Target = { ...target, name: 'shared-2', url: second.url, pid: second.proc.pid };
  log(`shared: second instance pid ${second.proc.pid}; ${pinning}`);
  const pair = (seconds: number): Promise<JsonLoad[]> =>
    Promise.all([jsonLoad(target, t.connectionsEach, seconds), jsonLoad(T2, t.connectionsEach, seconds)]);
  const warm = await pair(plan.warmupSeconds);
  if (warm.some((j) => j.ok2xx === 0))
    throw new Error('warm-up of the two shared instances got no 2xx answer');
  await sleep(plan.pauseMs);
  for (let r = 1; r <= plan.shared.twoInstanceRounds; r++) {
    const order: TwoInstanceRound['order'] = r % 2 === 1 ? ['one', 'two'] : ['two', 'one'];
    const rd: TwoInstanceRound = { round: r, order };
    t.rounds.push(rd);
    for (const which of order) {
      if (which === 'one') {
        rd.one = await quietly('one shared instance', () =>
          jsonLoad(target, plan.connections, plan.jsonSeconds),
        );
        log(`shared two-instance round ${r} one: ${showJson(rd.one)}`);
      } else {
        const two = await quietly('two shared instances', () => pair(plan.jsonSeconds));
        rd.two = two;
        const rps = two.reduce((a, j) => a + j.rps, 0);
        log(
          `shared two-instance round ${r} two: ${round(rps, 0)} req/s together (${two.map((j) => showJson(j)).join(' | ')})`,
        );
      }
      await sleep(plan.pauseMs);
    }
  }
  t.rss = [first, second].map((gw) => {
    const m = memInfo(gw.proc.pid);
    return { hwmKb: m.hwmKb, rssKb: m.rssKb };
  });
}
