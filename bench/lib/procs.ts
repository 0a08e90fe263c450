/**
 * Child processes of the benchmark: each server runs in its own Node process (pinned to one CPU
 * with `taskset` when available) so its CPU time and memory can be read from /proc on its own.
 * Everything started here — processes and temporary directories — is registered and torn down
 * on exit, on errors and on SIGINT/SIGTERM.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import ts from 'typescript';

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or null when killed by a signal). */
  readonly exited: Promise<number | null>;
}

const procs = new Set<Proc>();
const tempDirs = new Set<string>();

export const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

/** A temporary directory removed at exit. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/**
 * Transpiles a self-contained bench script (node: imports only) to `<outDir>/<name>.mjs`, so the
 * measured process runs plain JavaScript with no TypeScript loader in it.
 */
export function transpileScript(tsFile: string, outDir: string): string {
  const out = ts.transpileModule(readFileSync(tsFile, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  const path = join(outDir, `${basename(tsFile, '.ts')}.mjs`);
  writeFileSync(path, out.outputText);
  return path;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Pins the current process (all its threads) to `cpu`; returns false when that is not possible. */
export function pinSelf(cpu: number): boolean {
  if (!hasTaskset) return false;
  return spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)]).status === 0;
}

/** Starts `node <args>` with `env`, output appended to `logFile`, pinned to `cpu` when possible. */
export function startNode(opts: {
  name: string;
  args: readonly string[];
  env: Record<string, string>;
  cpu: number | undefined;
  logFile: string;
}): Proc {
  const fd = openSync(opts.logFile, 'a');
  const pin = hasTaskset && opts.cpu !== undefined;
  const cmd = pin ? 'taskset' : process.execPath;
  const args = pin ? ['-c', String(opts.cpu), process.execPath, ...opts.args] : [...opts.args];
  // taskset execs node in place, so the pid is the Node process itself.
  const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`could not start ${opts.name}`);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const proc: Proc = { name: opts.name, pid: child.pid, logFile: opts.logFile, child, exited };
  procs.add(proc);
  void exited.then(() => procs.delete(proc));
  return proc;
}

/** Polls `url` until it answers (any status below 500); fails when the process exits first. */
export async function waitReady(proc: Proc, url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`${proc.name} exited during start-up:\n${logTail(proc)}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      if (res.status < 500) return;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  throw new Error(`${proc.name} did not become ready within ${timeoutMs} ms:\n${logTail(proc)}`);
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProc(proc: Proc, graceMs = 15_000): Promise<number | null> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return proc.child.exitCode;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), graceMs);
  const code = await proc.exited;
  clearTimeout(timer);
  return code;
}

export function logTail(proc: Proc, lines = 30): string {
  try {
    return readFileSync(proc.logFile, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** User + system CPU time of `pid` so far, in microseconds (from /proc/<pid>/stat). */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at field 3 (state).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / CLK_TCK;
}

/**
 * Processes outside `startNode` whose CPU counts as the benchmark's own (e.g. the private
 * redis-server and the PostgreSQL backends serving the benchmark's database). Each source is
 * asked for its current pids whenever a measurement starts or ends.
 */
const pidSources = new Set<() => readonly number[]>();

/** Registers a source of pids counted as ours; returns a function that removes it. */
export function addPidSource(source: () => readonly number[]): () => void {
  pidSources.add(source);
  return () => pidSources.delete(source);
}

/** CPU so far (µs) of every process that is ours, by pid (this process under 0). */
function oursSnapshot(): Map<number, number> {
  const self = process.cpuUsage();
  const out = new Map<number, number>([[0, self.user + self.system]]);
  const add = (pid: number): void => {
    if (out.has(pid)) return;
    try {
      out.set(pid, cpuMicros(pid));
    } catch {
      // exited meanwhile
    }
  };
  for (const p of procs) add(p.pid);
  for (const source of pidSources) for (const pid of source()) add(pid);
  return out;
}

/**
 * CPU (µs) used between two snapshots by the processes of the second one: a process that was not
 * in the first counts whole (it started meanwhile), one that is gone from the second counts
 * nothing from its last snapshot on.
 */
export function cpuBetween(before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>): number {
  let total = 0;
  for (const [pid, us] of after) total += Math.max(0, us - (before.get(pid) ?? 0));
  return total;
}

/** CPU so far (µs) of the given processes, by pid (missing ones left out). */
export function cpuSnapshot(pids: Iterable<number>): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    try {
      out.set(pid, cpuMicros(pid));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/**
 * Starts measuring CPU used by processes other than this benchmark's (user + system time of the
 * whole machine minus ours); the returned function gives their average use in cores since then.
 * Other work on the machine skews the ratios, so each measurement records it.
 */
export function foreignCpu(): () => number {
  const t0 = performance.now();
  const busy0 = machineBusyUs();
  const ours0 = oursSnapshot();
  return () => {
    const wallUs = (performance.now() - t0) * 1000;
    return Math.max(0, machineBusyUs() - busy0 - cpuBetween(ours0, oursSnapshot())) / wallUs;
  };
}

function machineBusyUs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const [, user, nice, system] = line.trim().split(/\s+/).map(Number);
  return (((user ?? 0) + (nice ?? 0) + (system ?? 0)) * 1e6) / CLK_TCK;
}

let retriesLeft = Number(process.env['BENCH_NOISE_RETRIES'] ?? '8');

/**
 * Runs a measurement and repeats it (a few times per run at most) when other processes used more
 * than `maxForeign` cores meanwhile; returns the quietest attempt.
 */
export async function quietly<T>(label: string, run: () => Promise<T>, maxForeign = 0.2): Promise<T> {
  let best: { value: T; foreign: number } | undefined;
  for (;;) {
    const foreign = foreignCpu();
    const value = await run();
    const f = foreign();
    if (best === undefined || f < best.foreign) best = { value, foreign: f };
    if (f <= maxForeign || retriesLeft <= 0) return best.value;
    retriesLeft--;
    process.stdout.write(
      `  (${label}: other processes used ${f.toFixed(2)} cores meanwhile; measuring again)\n`,
    );
    await sleep(1_000);
  }
}

export interface MemInfo {
  /** Current resident set, kB. */
  readonly rssKb: number;
  /** Peak resident set since start (VmHWM), kB. */
  readonly hwmKb: number;
}

export function memInfo(pid: number): MemInfo {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string): number =>
    Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
}

/** Soft limit on open files of `pid` (from /proc/<pid>/limits). */
export function openFileLimit(pid: number): number {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  return m === null || m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const syncCleanups = new Set<() => void>();
const asyncCleanups = new Set<() => Promise<void>>();

/**
 * Registers a clean-up that must also run when the run is interrupted: `sync` runs at every exit
 * (kill something), `async` on errors and Ctrl-C before the process exits (e.g. drop a database).
 * The returned function unregisters both (call it once the phase cleaned up by itself).
 */
export function onCleanup(cleanup: { sync?: () => void; async?: () => Promise<void> }): () => void {
  const { sync, async } = cleanup;
  if (sync !== undefined) syncCleanups.add(sync);
  if (async !== undefined) asyncCleanups.add(async);
  return () => {
    if (sync !== undefined) syncCleanups.delete(sync);
    if (async !== undefined) asyncCleanups.delete(async);
  };
}

/** Runs the registered asynchronous clean-ups (each at most once), giving up after `timeoutMs`. */
export async function runAsyncCleanups(timeoutMs = 20_000): Promise<void> {
  const all = [...asyncCleanups];
  asyncCleanups.clear();
  if (all.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      process.stderr.write(`bench: clean-up did not finish within ${timeoutMs} ms\n`);
      resolve();
    }, timeoutMs);
  });
  const work = Promise.all(
    all.map((fn) =>
      fn().catch((err: unknown) => {
        process.stderr.write(`bench: clean-up failed: ${err instanceof Error ? err.message : String(err)}\n`);
      }),
    ),
  ).then(() => undefined);
  await Promise.race([work, timeout]);
  clearTimeout(timer);
}

/** Kills whatever is still running and removes the temporary directories (synchronous). */
function cleanupSync(): void {
  for (const p of procs) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  }
  procs.clear();
  for (const fn of syncCleanups) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
  syncCleanups.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

let installed = false;
let aborting = false;

/** True once a signal or a crash started tearing the run down (measurements are then void). */
export function interrupted(): boolean {
  return aborting;
}

/** Kills the children at once, then runs the asynchronous clean-ups, then exits with `code`. */
function abort(code: number): void {
  cleanupSync();
  void runAsyncCleanups().finally(() => process.exit(code));
}

/** Installs the exit / signal / crash handlers once. */
export function installCleanup(): void {
  if (installed) return;
  installed = true;
  process.on('exit', cleanupSync);
  // Exit codes 128 + the signal's number, as a shell reports a process killed by it.
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.on(sig, () => {
      if (aborting) return;
      aborting = true;
      process.stderr.write(`\nbench: ${sig} received, stopping child processes\n`);
      abort(code);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    if (aborting) return;
    aborting = true;
    abort(1);
  });
}
