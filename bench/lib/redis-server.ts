/**
 * The benchmark's own redis-server: a private process on a free loopback port, in a temporary
 * directory, persisting nothing (`--save "" --appendonly no`), so the run never touches the
 * machine's shared Redis on 6379. (The same idea as test/support/redis-server.ts, which bench code
 * must not import.)
 *
 * It runs under a tiny `sh` guard that reads its stdin: our end of that pipe closes when this
 * process exits however it exits (even SIGKILL), and the guard then kills the server. On a normal
 * exit, on errors and on Ctrl-C the server is also killed directly (procs.ts clean-ups).
 *
 * Also a minimal RESP client for `INFO` (command counts before and after a load), so counting
 * round trips needs no Redis library in the load generator.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createConnection } from 'node:net';
import { delimiter, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { freePort, hasTaskset, onCleanup, tempDir } from './procs.js';

/** redis-server on the PATH (or in the usual sbin directories), or undefined when there is none. */
function findRedisServer(): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const path = join(dir, 'redis-server');
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

const REDIS_SERVER_BIN = findRedisServer();

export interface BenchRedis {
  readonly port: number;
  /** `127.0.0.1:<port>`, the shape of `REDIS_ADDR`. */
  readonly addr: string;
  /** The redis-server process (for its CPU time). */
  readonly pid: number;
  readonly version: string;
  /** Kills the server and waits until it is gone. Idempotent. */
  stop(): Promise<void>;
}

// Start the server, print its pid, wait on stdin in the background; EOF kills the server. The
// guard exits when the server does. (A background job's stdin is /dev/null in a non-interactive
// shell, hence the copy of our pipe on descriptor 3.)
const GUARD = [
  'exec 3<&0',
  '"$@" & pid=$!',
  'echo "$pid"',
  '{ read -r _x <&3; kill -9 "$pid" 2>/dev/null; } & reader=$!',
  'wait "$pid"; status=$?',
  'kill "$reader" 2>/dev/null',
  'exit "$status"',
].join('; ');

type Guard = ChildProcessByStdio<Writable, Readable, Readable>;

/** Why the phase cannot have its own Redis, or undefined when it can. */
export function redisUnavailableReason(): string | undefined {
  return REDIS_SERVER_BIN !== undefined ? undefined : 'no redis-server on the PATH';
}

/** Starts a private redis-server (pinned to `cpu` when taskset is available). */
export async function startBenchRedis(cpu: number | undefined): Promise<BenchRedis> {
  const dir = tempDir('proxyxai-bench-redis-');
  for (let attempt = 1; ; attempt++) {
    // A port found free may be taken before the server binds it; a few tries make that harmless.
    const port = await freePort();
    try {
      return await launch(port, dir, cpu);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

async function launch(port: number, dir: string, cpu: number | undefined): Promise<BenchRedis> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  args.push('--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', '--protected-mode', 'no');
  if (REDIS_SERVER_BIN === undefined) throw new Error('no redis-server on the PATH');
  const shArgs = ['-c', GUARD, 'redis-guard', REDIS_SERVER_BIN, ...args];
  const pin = hasTaskset && cpu !== undefined;
  const child: Guard = pin
    ? spawn('taskset', ['-c', String(cpu), '/bin/sh', ...shArgs], { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn('/bin/sh', shArgs, { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let serverPid: number | undefined;
  const killNow = (): void => {
    if (serverPid !== undefined) {
      try {
        process.kill(serverPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (!exited()) child.stdin.end();
  };
  const unregister = onCleanup({ sync: killNow });
  const stop = async (): Promise<void> => {
    killNow();
    if (!exited()) await gone;
    unregister();
  };
  try {
    serverPid = await waitForServer(port, exited, () => output);
  } catch (err) {
    await stop();
    throw err;
  }
  const info = await redisInfo(port, 'server');
  return {
    port,
    addr: `127.0.0.1:${port}`,
    pid: serverPid,
    version: info['redis_version'] ?? 'unknown',
    stop,
  };
}

/**
 * Resolves with the server's pid once OUR server answers on the port: the guard prints the pid
 * first, and INFO must report the same one, so a stranger that grabbed the port is never taken
 * for it. Rejects if the guard died (the server could not start) or after 5 s.
 */
async function waitForServer(port: number, died: () => boolean, output: () => string): Promise<number> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    if (died()) throw new Error(`redis-server on port ${port} exited: ${output().trim()}`);
    const lines = output().split('\n');
    const expected = lines.length > 1 ? lines[0] : undefined;
    const pid = await redisInfo(port, 'server', 1_000).then(
      (i) => i['process_id'],
      () => undefined,
    );
    if (expected !== undefined && pid !== undefined) {
      if (pid !== expected) throw new Error(`port ${port} is served by another process (pid ${pid})`);
      return Number(pid);
    }
    if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port} within 5 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `INFO <section>` of the Redis on 127.0.0.1:`port`, as `field → value`. */
export function redisInfo(port: number, section: string, timeoutMs = 5_000): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let buf = '';
    const fail = (err: Error): void => {
      socket.destroy();
      reject(err);
    };
    socket.setTimeout(timeoutMs, () => fail(new Error(`INFO ${section}: no answer within ${timeoutMs} ms`)));
    socket.once('error', fail);
    socket.once('connect', () => socket.write(`INFO ${section}\r\n`));
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      if (buf.startsWith('-')) return fail(new Error(buf.trim()));
      const m = /^\$(\d+)\r\n/.exec(buf);
      if (m === null) return;
      const start = m[0].length;
      // The length counts bytes; INFO is ASCII.
      if (buf.length < start + Number(m[1])) return;
      socket.destroy();
      const out: Record<string, string> = {};
      for (const line of buf.slice(start, start + Number(m[1])).split('\r\n')) {
        const at = line.indexOf(':');
        if (at > 0 && !line.startsWith('#')) out[line.slice(0, at)] = line.slice(at + 1);
      }
      resolve(out);
    });
  });
}

/** Calls per command so far (`INFO commandstats`), e.g. `{ evalsha: 120, get: 3 }`. */
export async function commandCounts(port: number): Promise<Record<string, number>> {
  const info = await redisInfo(port, 'commandstats');
  const out: Record<string, number> = {};
  for (const [field, value] of Object.entries(info)) {
    const m = /^calls=(\d+)/.exec(value);
    if (field.startsWith('cmdstat_') && m !== null) out[field.slice('cmdstat_'.length)] = Number(m[1]);
  }
  return out;
}
