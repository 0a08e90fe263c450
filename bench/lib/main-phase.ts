/**
 * The head-to-head phase: reference proxy and gateway side by side (both pinned to the proxy CPU,
 * only one under load at a time), measured in interleaved rounds whose order alternates:
 * JSON throughput at 64 connections, latency at 1 connection (also direct to the mock), paced
 * stream timings (also direct) and CPU per chunk over a burst of unpaced streams.
 */
import { startReference } from './servers.js';
import { CPU_PROXY, log, plan } from './context.js';
import { createSubAccount, heapStats, startGateway, stopGateway } from './gateway.js';
import {
  jsonLoad,
  sequentialLatency,
  streamBatch,
  streamBurst,
  type BurstResult,
  type JsonLoad,
  type Target,
} from './load.js';
import { memInfo, quietly, sleep, stopProc, tempDir } from './procs.js';
import type { PacedResult, Results, Round } from './results.js';
import { median, round } from './stats.js';

type Proxy = 'reference' | 'gateway';

export function showJson(j: JsonLoad): string {
  return (
    `${round(j.rps, 0)} req/s, p50 ${j.p50Ms} ms, p99 ${j.p99Ms} ms, p99.9 ${j.p999Ms} ms, ` +
    (j.loopMaxMs === undefined
      ? ''
      : `loop delay max ${round(j.loopMaxMs, 1)} / p99 ${round(j.loopP99Ms ?? NaN, 1)} ms, `) +
    `${round(j.cpuUsPerReq, 1)} µs CPU/req, ` +
    (j.gc === undefined
      ? ''
      : `GC ${round(j.gc.usPerReq, 1)} µs/req (${round(j.gc.scavengesPer1k, 1)} scavenges per 1k, ${j.gc.majors} mark-compacts), `) +
    `${round(j.cpuUtil, 2)} cores${j.non2xx + j.errors > 0 ? `, ${j.non2xx} non-2xx ${JSON.stringify(j.statusCodes ?? {})}, ${j.errors} errors` : ''}` +
    (j.foreignCpu > 0.05 ? ` [other processes: ${round(j.foreignCpu, 2)} cores]` : '')
  );
}

export function showBurst(b: BurstResult): string {
  return `${b.streams} streams, ${b.events} chunks, ${round(b.cpuUsPerChunk, 2)} µs CPU/chunk, ${round(b.cpuUtil, 2)} cores${b.failed > 0 ? `, ${b.failed} FAILED` : ''}${b.foreignCpu > 0.05 ? ` [other processes: ${round(b.foreignCpu, 2)} cores]` : ''}`;
}

export async function paced(target: Target): Promise<PacedResult> {
  const rs = await streamBatch(target, plan.pacedStreams, plan.pacedConcurrency, {
    chunks: plan.pacedChunks,
    intervalMs: plan.pacedIntervalMs,
    // Spread the starts over one stream's duration.
    staggerMs: Math.round((plan.pacedChunks * plan.pacedIntervalMs) / plan.pacedConcurrency),
  });
  const ok = rs.filter((r) => r.ok);
  return {
    ttftMedianMs: median(ok.map((r) => r.ttftMs)),
    totalMedianMs: median(ok.map((r) => r.totalMs)),
    streams: rs.length,
    failed: rs.length - ok.length,
  };
}

export async function mainPhase(res: Results, mockUrl: string, refJs: string, logDir: string): Promise<void> {
  const { proc: ref, url: refUrl } = await startReference(refJs, mockUrl, logDir);
  const gw = await startGateway({
    name: 'gateway',
    dataDir: tempDir('proxyxai-bench-main-'),
    mockUrl,
    cpu: CPU_PROXY,
    logDir,
  });
  const sub = await createSubAccount(gw);
  res.subAccount = { rootFallback: sub.rootFallback, note: sub.note };
  if (sub.rootFallback)
    res.notes.push(`**${sub.note}** — the figures below skip sub-account balance checks.`);
  log(`reference pid ${ref.pid}, gateway pid ${gw.proc.pid}; ${sub.note}`);

  const T: Record<'direct' | Proxy, Target> = {
    direct: { name: 'direct', url: mockUrl, key: 'sk-direct', pid: undefined },
    reference: {
      name: 'reference',
      url: refUrl,
      key: sub.key,
      pid: ref.pid,
      metricsUrl: `${refUrl}/metrics`,
    },
    gateway: {
      name: 'gateway',
      url: gw.url,
      key: sub.key,
      pid: gw.proc.pid,
      metricsUrl: `${gw.url}/metrics`,
    },
  };

  log('warm-up');
  for (const w of ['reference', 'gateway'] as const) {
    const j = await jsonLoad(T[w], plan.connections, plan.warmupSeconds);
    if (j.ok2xx === 0) throw new Error(`warm-up against ${w} got no 2xx answer (${j.non2xx} non-2xx)`);
    await streamBurst(T[w], plan.warmupSeconds, plan.burstConcurrency, plan.burstChunks);
    await sequentialLatency(T[w], 200);
  }
  await sleep(plan.pauseMs);

  for (let r = 1; r <= plan.rounds; r++) {
    const order: readonly Proxy[] = r % 2 === 1 ? ['reference', 'gateway'] : ['gateway', 'reference'];
    const rd: Round = { round: r, order, json: {}, latency: {}, paced: {}, burst: {} };
    res.rounds.push(rd);
    for (const w of order) {
      rd.json[w] = await quietly(`json ${w}`, () => jsonLoad(T[w], plan.connections, plan.jsonSeconds));
      log(`round ${r} json ${w.padEnd(9)}: ${showJson(rd.json[w])}`);
      await sleep(plan.pauseMs);
    }
    for (const w of ['direct', ...order] as const) {
      const l = await quietly(`1-conn ${w}`, () => sequentialLatency(T[w], plan.latencyRequests));
      rd.latency[w] = l;
      log(
        `round ${r} 1-conn ${w.padEnd(9)}: median ${round(l.medianMs, 3)} ms, p99 ${round(l.p99Ms, 3)} ms${l.errors > 0 ? `, ${l.errors} errors` : ''}`,
      );
    }
    await sleep(plan.pauseMs);
    for (const w of ['direct', ...order] as const) {
      const p = await quietly(`paced ${w}`, () => paced(T[w]));
      rd.paced[w] = p;
      log(
        `round ${r} paced  ${w.padEnd(9)}: TTFT ${round(p.ttftMedianMs, 3)} ms, total ${round(p.totalMedianMs, 1)} ms${p.failed > 0 ? `, ${p.failed} FAILED` : ''}`,
      );
    }
    await sleep(plan.pauseMs);
    for (const w of order) {
      const b = await quietly(`burst ${w}`, () =>
        streamBurst(T[w], plan.burstSeconds, plan.burstConcurrency, plan.burstChunks),
      );
      rd.burst[w] = b;
      log(`round ${r} burst  ${w.padEnd(9)}: ${showBurst(b)}`);
      await sleep(plan.pauseMs);
    }
  }
  const refMem = memInfo(ref.pid);
  const gwMem = memInfo(gw.proc.pid);
  res.rss = {
    reference: { hwmKb: refMem.hwmKb, rssKb: refMem.rssKb },
    gateway: { hwmKb: gwMem.hwmKb, rssKb: gwMem.rssKb },
  };
  res.gatewayHeap = await heapStats(gw);
  log(
    `peak RSS (VmHWM): reference ${round(refMem.hwmKb / 1024, 1)} MB, gateway ${round(gwMem.hwmKb / 1024, 1)} MB`,
  );
  await stopProc(ref);
  const code = await stopGateway(gw);
  if (code !== 0) res.notes.push(`The gateway exited with code ${String(code)} on SIGTERM.`);
}
