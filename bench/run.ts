/**
 * `npm run bench` — performance of the gateway against a plain Node reverse proxy (the practical
 * floor) in the same run, on 127.0.0.1, every server in its own pinned process:
 *
 *   CPU 0: fast mock upstream (bench/mock-upstream.ts) + this process (load generator)
 *   CPU 1: the proxy under test — bench/reference-proxy.ts or the gateway (`node dist/main.js`)
 *
 * Phases (BENCH_PHASES=main,scale,many,shared): head-to-head rounds, the scale run, many
 * concurrent streams, and shared mode (one gateway on PostgreSQL + Redis against the embedded one
 * and the reference, store round trips per request, two shared instances; its own database and
 * redis-server, removed at the end; skipped with a note without PostgreSQL or redis-server).
 * Writes bench/results/<date>.json and, in full mode, the tables of BENCHMARKS.md.
 * Full mode takes ~17 minutes (the shared phase alone ~9); BENCH_QUICK=1 is a smoke run of about
 * three minutes (the shared phase alone ~1.5) that writes bench/results/<date>-quick.json and
 * leaves BENCHMARKS.md alone. A phase that failed makes the run exit with code 1 once the results
 * are written.
 * Other knobs: BENCH_ROUNDS, BENCH_DURATION (s), BENCH_STREAMS, BENCH_SKIP_BUILD=1, BENCH_LABEL,
 * BENCH_GATEWAY_ROOT (measure another, already built, gateway package), BENCH_GATEWAY_ENV
 * ("NAME=value,..." added to every gateway start), BENCH_POSTGRES (admin URL of the PostgreSQL server
 * of the shared phase, default postgres://postgres@127.0.0.1:5432/postgres; `off` skips it).
 */
import { startMock, transpileReference } from './lib/servers.js';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { CPU_LOAD, CPU_PROXY, QUICK, log, plan } from './lib/context.js';
import { GATEWAY_ROOT, REPO_ROOT } from './lib/gateway.js';
import { mainPhase } from './lib/main-phase.js';
import {
  hasTaskset,
  installCleanup,
  interrupted,
  logTail,
  openFileLimit,
  pinSelf,
  runAsyncCleanups,
  stopProc,
  tempDir,
} from './lib/procs.js';
import {
  evaluateTargets,
  isCompleteRun,
  noiseNote,
  renderMarkdown,
  summarise,
  writeResults,
  type Results,
} from './lib/results.js';
import { manyStreamsPhase, scalePhase } from './lib/scale-phase.js';
import { sharedPhase } from './lib/shared-phase.js';

/** Git commit of the measured build (with a `-dirty` mark for uncommitted changes under src/). */
function describeGateway(): Record<string, unknown> {
  const git = (...args: string[]): string =>
    spawnSync('git', ['-C', GATEWAY_ROOT, ...args], { encoding: 'utf8' }).stdout?.trim() ?? '';
  const own = GATEWAY_ROOT === REPO_ROOT;
  const commit = own ? git('rev-parse', '--short', 'HEAD') : '';
  const dirty = own && git('status', '--porcelain', '--', 'src') !== '';
  const describe = own
    ? `working tree at ${commit}${dirty ? ' with uncommitted changes under src/' : ''}`
    : `build in ${GATEWAY_ROOT}${plan.label !== '' ? ` (${plan.label})` : ''}`;
  const extraEnv = process.env['BENCH_GATEWAY_ENV'] ?? '';
  return {
    root: GATEWAY_ROOT,
    commit,
    dirty,
    extraEnv,
    describe: `${describe}${extraEnv !== '' ? `, extra env ${extraEnv}` : ''}`,
  };
}

function build(notes: string[]): void {
  if (plan.skipBuild || GATEWAY_ROOT !== REPO_ROOT) {
    log(`build skipped: using the existing ${GATEWAY_ROOT}/dist`);
    return;
  }
  log('npm run build');
  const r = spawnSync('npm', ['run', 'build'], { cwd: REPO_ROOT, stdio: 'inherit' });
  if (r.status === 0) return;
  if (!existsSync(join(REPO_ROOT, 'dist/main.js')))
    throw new Error('npm run build failed and dist/ is empty');
  const note = 'npm run build reported errors; the benchmark ran on the JavaScript tsc emitted anyway.';
  notes.push(note);
  log(`WARNING: ${note}`);
}

/** Runs the phases and writes the results; false when a phase failed (results still written). */
async function main(): Promise<boolean> {
  installCleanup();
  const started = new Date();
  const res: Results = {
    date: started.toISOString().slice(0, 10),
    startedAt: started.toISOString(),
    quick: QUICK,
    label: plan.label,
    gateway: describeGateway(),
    machine: {},
    config: { ...plan, phases: [...plan.phases] },
    notes: [],
    subAccount: { rootFallback: false, note: '' },
    rounds: [],
  };
  build(res.notes);
  const pinned = CPU_LOAD !== undefined && pinSelf(CPU_LOAD);
  res.machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    node: process.version,
    platform: `${process.platform} ${release()}`,
    taskset: hasTaskset && pinned,
    cpuLoadGenAndMock: CPU_LOAD ?? null,
    cpuProxy: CPU_PROXY ?? null,
    openFileLimit: openFileLimit(process.pid),
  };
  if (!pinned)
    res.notes.push('No CPU pinning (taskset unavailable or fewer than 2 CPUs): figures are noisier.');

  const work = tempDir('proxyxai-bench-');
  // The mock and the reference proxy run as plain JS (no loader in the measured process).
  const refJs = transpileReference(work);
  const { proc: mock, url: mockUrl } = await startMock(work);
  log(`mock upstream pid ${mock.pid} on ${mockUrl}; logs in ${work}`);

  try {
    if (plan.phases.has('main')) await mainPhase(res, mockUrl, refJs, work);
    if (plan.phases.has('scale')) await scalePhase(res, mockUrl, work);
    if (plan.phases.has('many')) await manyStreamsPhase(res, mockUrl, refJs, work);
    if (plan.phases.has('shared')) await sharedPhase(res, mockUrl, refJs, work);
  } catch (err: unknown) {
    if (interrupted()) return new Promise<boolean>(() => undefined);
    log(`mock log tail:\n${logTail(mock)}`);
    throw err;
  }
  await stopProc(mock);

  // Interrupted: the children are gone and the clean-ups are running; write nothing.
  if (interrupted()) return new Promise<boolean>(() => undefined);
  const finished = new Date();
  res.finishedAt = finished.toISOString();
  res.durationS = (finished.getTime() - started.getTime()) / 1000;
  const noise = noiseNote(res);
  if (noise !== undefined) res.notes.push(noise);
  if (res.rounds.length > 0) res.summary = summarise(res);
  res.targets = evaluateTargets(res);
  const md = !QUICK && isCompleteRun(plan.phases) && plan.label === '' && GATEWAY_ROOT === REPO_ROOT;
  const { jsonPath } = writeResults(REPO_ROOT, res, md);
  process.stdout.write(`\n${renderMarkdown(res, jsonPath)}\n\n`);
  log(
    `results written to ${jsonPath}${md ? ' and BENCHMARKS.md' : ' (quick, partial, labelled or other-build run: BENCHMARKS.md left unchanged)'}`,
  );
  if (res.shared?.error !== undefined) {
    log(`the shared-mode phase FAILED: ${res.shared.error}`);
    return false;
  }
  return true;
}

// The asynchronous clean-ups (the shared phase's database) run before exiting, whatever happened.
main().then(
  (ok) => runAsyncCleanups().finally(() => process.exit(ok ? 0 : 1)),
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    void runAsyncCleanups().finally(() => process.exit(1));
  },
);
