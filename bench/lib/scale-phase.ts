/**
 * The phases after the head-to-head rounds.
 * - Scale: four gateways — small (10 pool keys, 100 sub-accounts), many keys (10,000), many
 *   accounts (100,000) and large (both) — measured in turn at 64 connections: per-request cost
 *   should not depend on the size of the pool or of the account tree.
 * - Many streams: ~10,000 slow streams at once, each on its own connection, through the reference
 *   proxy and then the gateway; errors, peak concurrency and each one's memory before, during and
 *   after.
 */
import { startReference } from './servers.js';
import { performance } from 'node:perf_hooks';
import { CPU_PROXY, log, plan } from './context.js';
import {
  addPoolKeys,
  createSubAccount,
  heapStats,
  insertFillerAccounts,
  startGateway,
  stopGateway,
  storedCounts,
  type Gateway,
} from './gateway.js';
import { jsonLoad, manyStreams, streamBatch, type Target } from './load.js';
import { memInfo, openFileLimit, quietly, sleep, stopProc, tempDir } from './procs.js';
import type { ManyStreams, Results, ScaleConfig } from './results.js';
import { round } from './stats.js';

interface Sized {
  readonly config: ScaleConfig;
  readonly gw: Gateway;
  readonly target: Target;
}

async function setUp(
  label: string,
  size: { keys: number; accounts: number },
  mockUrl: string,
  logDir: string,
): Promise<Sized> {
  const t0 = performance.now();
  const dataDir = tempDir(`proxyxai-bench-${label}-`);
  const base = { dataDir, mockUrl, cpu: CPU_PROXY, logDir };
  const setup = await startGateway({ ...base, name: `gateway-${label}-setup` });
  const sub = await createSubAccount(setup, `bench${label}`);
  if (size.keys > 10) await addPoolKeys(setup, size.keys - 10, 10);
  await stopGateway(setup);
  insertFillerAccounts(dataDir, sub.rootFallback ? size.accounts : size.accounts - 1);
  const stored = storedCounts(dataDir);
  const gw = await startGateway({ ...base, name: `gateway-${label}` });
  const setupS = (performance.now() - t0) / 1000;
  const startRssKb = memInfo(gw.proc.pid).rssKb;
  const startHeap = await heapStats(gw);
  log(
    `scale ${label}: ${stored.keys} pool keys, ${stored.accounts - 1} sub-accounts, set up in ` +
      `${round(setupS, 1)} s, RSS after start ${round(startRssKb / 1024, 1)} MB (heap used ${round(startHeap.heapUsedMB, 1)} MB)`,
  );
  return {
    config: {
      label,
      keys: stored.keys,
      accounts: stored.accounts - 1,
      setupS,
      startRssKb,
      startHeap,
      runs: [],
    },
    gw,
    target: { name: 'gateway', url: gw.url, key: sub.key, pid: gw.proc.pid },
  };
}

export async function scalePhase(res: Results, mockUrl: string, logDir: string): Promise<void> {
  const all: Sized[] = [];
  for (const size of plan.scale.sizes) all.push(await setUp(size.label, size, mockUrl, logDir));
  res.scale = all.map((s) => s.config);
  // A little longer than elsewhere: each gateway is fresh, and the first run is the cold one.
  for (const s of all) await jsonLoad(s.target, plan.connections, plan.warmupSeconds + 1);
  // `small` and `large` (first and last size) are measured back to back in every round, since the
  // target compares them pairwise; the two diagnostic sizes go around them.
  const first = all[0];
  const last = all[all.length - 1];
  const paired = first !== undefined && last !== undefined ? [first, last, ...all.slice(1, -1)] : all;
  for (let r = 1; r <= plan.scale.rounds; r++) {
    const order = r % 2 === 1 ? paired : [...paired].reverse();
    for (const s of order) {
      await sleep(plan.pauseMs);
      const j = await quietly(`scale ${s.config.label}`, () =>
        jsonLoad(s.target, plan.connections, plan.scale.seconds),
      );
      s.config.runs.push(j);
      log(
        `scale round ${r} ${s.config.label.padEnd(8)}: ${round(j.rps, 0)} req/s, ${round(j.cpuUsPerReq, 1)} µs CPU/req` +
          `${j.non2xx + j.errors > 0 ? `, ${j.non2xx} non-2xx, ${j.errors} errors` : ''}` +
          (j.foreignCpu > 0.05 ? ` [other processes: ${round(j.foreignCpu, 2)} cores]` : ''),
      );
    }
  }
  for (const s of all) await stopGateway(s.gw);
}

export async function manyStreamsPhase(
  res: Results,
  mockUrl: string,
  refJs: string,
  logDir: string,
): Promise<void> {
  // Each stream holds two sockets in the proxy (client side and upstream side).
  const fdLimit = openFileLimit(process.pid);
  const fit = Math.floor((fdLimit - 256) / 2);
  const count = Math.min(plan.many.count, fit);
  const note =
    count < plan.many.count
      ? `reduced from ${plan.many.count} to ${count}: the open-file limit is ${fdLimit} and cannot be raised here, and each stream holds 2 sockets in the gateway`
      : '';
  if (note !== '') {
    res.notes.push(`Many-streams test ${note}.`);
    log(`many streams: ${note}`);
  }
  const common = { targetCount: plan.many.count, fdLimit, note };

  // The reference first, in a process of its own, then the gateway: the same streams through each.
  const { proc: ref, url: refUrl } = await startReference(refJs, mockUrl, logDir, 'reference-streams');
  try {
    const target: Target = { name: 'reference', url: refUrl, key: 'sk-reference', pid: ref.pid };
    res.manyStreamsReference = { ...(await measureMany(target, count)), ...common };
  } finally {
    await stopProc(ref);
  }

  const gw = await startGateway({
    name: 'gateway-streams',
    dataDir: tempDir('proxyxai-bench-streams-'),
    mockUrl,
    cpu: CPU_PROXY,
    logDir,
  });
  try {
    const sub = await createSubAccount(gw, 'benchstreams');
    const target: Target = { name: 'gateway', url: gw.url, key: sub.key, pid: gw.proc.pid };
    res.manyStreams = { ...(await measureMany(target, count)), ...common };
  } finally {
    await stopGateway(gw);
  }
}

/** `count` paced streams through one proxy, its RSS sampled before, during and after. */
async function measureMany(
  target: Target,
  count: number,
): Promise<Omit<ManyStreams, 'targetCount' | 'fdLimit' | 'note'>> {
  const pid = target.pid ?? 0;
  await streamBatch(target, 50, 10, { chunks: 5, intervalMs: 0 });
  await sleep(plan.pauseMs);
  const before = memInfo(pid).rssKb;
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, memInfo(pid).rssKb);
  }, 200);
  const openPerSecond = Math.round((plan.many.batch * 1000) / plan.many.tickMs);
  log(
    `many streams (${target.name}): opening ${count} streams (${openPerSecond}/s) of ${plan.many.chunks} chunks ${plan.many.intervalMs} ms apart`,
  );
  let r;
  try {
    r = await manyStreams(target, count, plan.many);
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, memInfo(pid).rssKb);
  await sleep(3_000);
  const after = memInfo(pid).rssKb;
  const m = {
    ...r,
    chunks: plan.many.chunks,
    intervalMs: plan.many.intervalMs,
    openPerSecond,
    rssBeforeKb: before,
    rssPeakKb: peak,
    rssAfterKb: after,
    kbPerStream: (peak - before) / Math.max(1, r.peakConcurrent),
  };
  log(
    `many streams (${target.name}): ${m.ok}/${m.requested} ok, ${m.errors} errors ${JSON.stringify(m.errorKinds)}, peak ${m.peakConcurrent} ` +
      `concurrent, RSS ${round(before / 1024, 1)} → ${round(peak / 1024, 1)} → ${round(after / 1024, 1)} MB ` +
      `(${round(m.kbPerStream, 1)} kB/stream), ${round(m.durationS, 1)} s`,
  );
  return m;
}
