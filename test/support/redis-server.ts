/**
 * Private redis-server processes for tests. Every test file (or e2e run) starts its own server on a
 * free loopback port, in a temporary directory, persisting nothing (`--save "" --appendonly no`),
 * so tests never touch the machine's shared Redis on 6379 and parallel files never collide.
 *
 * Nothing may outlive the test process, even when a test fails or the worker is killed: the server
 * runs under a tiny `sh` guard that reads its stdin, and our end of that pipe closes when this
 * process exits however it exits, so the guard kills the server (SIGKILL) and goes away too.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export const REDIS_SERVER_BIN = '/usr/bin/redis-server';

export interface RedisServer {
  readonly port: number;
  /** `127.0.0.1:<port>`, the shape of `REDIS_ADDR`. */
  readonly addr: string;
  /** Kills the server (as a crash would) and waits until it is gone. Idempotent. */
  kill(): Promise<void>;
  /** Starts a fresh, EMPTY server on the same port after `kill()`. */
  start(): Promise<void>;
  /** `kill()` then `start()`: Redis restarted with no data. */
  restart(): Promise<void>;
  /** Freezes the server (SIGSTOP): connections stay open but nothing answers. */
  pause(): void;
  resume(): void;
  /** Kills the server and removes its directory. Idempotent; call it in afterAll. */
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  readonly password?: string;
}

// The guard: start the server, print its pid, and wait on stdin in the background; EOF (our
// process ended, or kill() closed the pipe) kills the server. The guard exits when the server
// does (ending its reader, which must not outlive the pid it would kill), so a server that fails
// to start is seen at once. (A background job's stdin is /dev/null in a non-interactive shell,
// hence the copy of our pipe on descriptor 3.)
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

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  if (!existsSync(REDIS_SERVER_BIN)) {
    throw new Error(`${REDIS_SERVER_BIN} is missing: install Debian's redis-server package`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'proxyxai-redis-'));
  let port = 0;
  let guard: Guard | undefined;
  let serverPid: number | undefined;

  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    args.push('--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', '--protected-mode', 'no');
    if (options.password !== undefined) args.push('--requirepass', options.password);
    const child = spawn('/bin/sh', ['-c', GUARD, 'redis-guard', REDIS_SERVER_BIN, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    guard = child;
    let output = '';
    const collect = (chunk: string): void => {
      output += chunk;
    };
    child.stdout.setEncoding('utf8').on('data', collect);
    child.stderr.setEncoding('utf8').on('data', collect);
    serverPid = await waitForServer(
      port,
      options.password,
      () => exited(child),
      () => output,
    );
  };

  const kill = async (): Promise<void> => {
    const child = guard;
    guard = undefined;
    serverPid = undefined;
    if (child === undefined || exited(child)) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stdin.end();
    await gone;
  };

  // A port found free may be taken before the server binds it; a few tries make that harmless.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (err) {
      await kill();
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const signal = (name: NodeJS.Signals): void => {
    if (serverPid !== undefined) process.kill(serverPid, name);
  };
  return {
    port,
    addr: `127.0.0.1:${port}`,
    kill,
    start: launch,
    restart: async () => {
      await kill();
      await launch();
    },
    pause: () => signal('SIGSTOP'),
    resume: () => signal('SIGCONT'),
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function exited(child: Guard): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Resolves with the server's pid once OUR server answers on the port: the guard prints the pid
 * first, and INFO must report the same one, so a stranger that grabbed the port is never taken
 * for it. Rejects if the guard died (the server could not start) or after 5 s.
 */
async function waitForServer(
  port: number,
  password: string | undefined,
  died: () => boolean,
  output: () => string,
): Promise<number> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    if (died()) throw new Error(`redis-server on port ${port} exited: ${output().trim()}`);
    const lines = output().split('\n');
    const expected = lines.length > 1 ? lines[0] : undefined;
    const pid = await reportedPid(port, password);
    if (expected !== undefined && pid !== undefined) {
      if (pid !== expected) throw new Error(`port ${port} is served by another process (pid ${pid})`);
      return Number(pid);
    }
    if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port} within 5 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The `process_id` a Redis on the port reports, or undefined when nothing answers (yet). */
async function reportedPid(port: number, password: string | undefined): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    let text = '';
    const done = (pid: string | undefined): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(1_000, () => done(undefined));
    socket.once('error', () => done(undefined));
    socket.once('connect', () => {
      socket.write(`${password === undefined ? '' : `AUTH ${password}\r\n`}INFO server\r\n`);
    });
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      text += chunk;
      const match = /process_id:(\d+)/.exec(text);
      if (match !== null) done(match[1]);
      else if (text.includes('-LOADING') || text.includes('-ERR')) done(undefined);
    });
  });
}
