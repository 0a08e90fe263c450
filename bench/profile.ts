/**
 * CPU profiles of the gateway under the benchmark's loads: `node --cpu-prof` on the gateway
 * child (pinned like in the bench), the 64-connection JSON load, then — in a second gateway —
 * a burst of unpaced 50-chunk streams. Each gateway is stopped with SIGTERM (graceful stop, so
 * the profile is written), and the top self-time functions are printed and saved to
 * bench/results/<date>-profile-<load>.txt. The .cpuprofile files (open them in Chrome DevTools)
 * are kept in BENCH_PROFILE_DIR (default: a new /tmp/proxyxai-profiles-* directory).
 *
 *   node --import tsx bench/profile.ts          (BENCH_DURATION=s, default 15; BENCH_SKIP_BUILD=1)
 */
import { startMock } from './lib/servers.js';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { CPU_LOAD, CPU_PROXY, log } from './lib/context.js';
import { createSubAccount, REPO_ROOT, startGateway, stopGateway } from './lib/gateway.js';
import { jsonLoad, streamBurst, type Target } from './lib/load.js';
import { installCleanup, pinSelf, stopProc, tempDir } from './lib/procs.js';
import { round } from './lib/stats.js';
import { summarizeProfile } from './profile-summary.js';

const seconds = Number(process.env['BENCH_DURATION'] ?? '15') || 15;

async function profileOne(
  kind: 'json' | 'stream',
  mockUrl: string,
  work: string,
  outDir: string,
): Promise<string> {
  const profDir = join(outDir, kind);
  mkdirSync(profDir, { recursive: true });
  const gw = await startGateway({
    name: `gateway-profile-${kind}`,
    dataDir: tempDir(`proxyxai-prof-${kind}-`),
    mockUrl,
    cpu: CPU_PROXY,
    logDir: work,
    nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
  });
  const sub = await createSubAccount(gw);
  const target: Target = { name: 'gateway', url: gw.url, key: sub.key, pid: gw.proc.pid };
  if (kind === 'json') {
    await jsonLoad(target, 64, 2);
    const j = await jsonLoad(target, 64, seconds);
    log(`profile json: ${round(j.rps, 0)} req/s, ${round(j.cpuUsPerReq, 1)} µs CPU/req (profiler on)`);
  } else {
    await streamBurst(target, 2, 32, 50);
    const b = await streamBurst(target, seconds, 32, 50);
    log(`profile stream: ${b.events} chunks, ${round(b.cpuUsPerChunk, 2)} µs CPU/chunk (profiler on)`);
  }
  const code = await stopGateway(gw);
  const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
  const file = files[0];
  if (file === undefined)
    throw new Error(`no .cpuprofile written in ${profDir} (gateway exit code ${String(code)})`);
  return join(profDir, file);
}

async function main(): Promise<void> {
  installCleanup();
  if (process.env['BENCH_SKIP_BUILD'] !== '1') {
    const r = spawnSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
    if (r.status !== 0)
      log('WARNING: npm run build reported errors; profiling the emitted JavaScript anyway');
  }
  if (CPU_LOAD !== undefined) pinSelf(CPU_LOAD);
  const outDir = process.env['BENCH_PROFILE_DIR'] ?? mkdtempSync(join(tmpdir(), 'proxyxai-profiles-'));
  const work = tempDir('proxyxai-prof-');
  const { proc: mock, url: mockUrl } = await startMock(work);
  const date = new Date().toISOString().slice(0, 10);
  mkdirSync(join(REPO_ROOT, 'bench/results'), { recursive: true });
  for (const kind of ['json', 'stream'] as const) {
    const file = await profileOne(kind, mockUrl, work, outDir);
    const summary = summarizeProfile(file, 25);
    const txt = join(REPO_ROOT, `bench/results/${date}-profile-${kind}.txt`);
    writeFileSync(txt, `${summary}\n`);
    process.stdout.write(`\n=== ${kind} load: ${basename(file)} ===\n${summary}\n`);
    log(`summary saved to ${txt}`);
  }
  await stopProc(mock);
  log(`profiles kept in ${outDir}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `profile failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
