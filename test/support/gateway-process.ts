/**
 * A gateway as a real child process (`node --import tsx src/main.ts`), for the tests that need
 * what an in-process gateway cannot give: several instances with their own event loops, kill -9,
 * and exit codes. Configured by environment only, as an operator would; its JSON log lines are
 * kept for assertions. Nothing outlives the test process: children are killed at its exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export interface GatewayProcess {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly logs: string[];
  /** Exit code (or signal name) once it has exited. */
  exited(): Promise<number | string>;
  /** kill -9: no shutdown, no final flush, no lease given back. */
  crash(): Promise<void>;
  /** SIGTERM: graceful shutdown; resolves with the exit code. */
  stop(): Promise<number | string>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

export async function startGatewayProcess(
  env: Record<string, string>,
  opts: { readyTimeoutMs?: number } = {},
): Promise<GatewayProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO,
    env: {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? '/tmp',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'info',
      TZ: 'UTC',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const logs: string[] = [];
  const collect = (chunk: Buffer): void => {
    logs.push(
      ...chunk
        .toString('utf8')
        .split('\n')
        .filter((l) => l !== ''),
    );
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exit = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve(code ?? signal ?? 'unknown');
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  let exitedEarly: number | string | undefined;
  void exit.then((c) => (exitedEarly = c));
  for (;;) {
    if (exitedEarly !== undefined) {
      throw new Error(`gateway exited (${exitedEarly}) before it listened:\n${logs.slice(-20).join('\n')}`);
    }
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`gateway did not listen in time:\n${logs.slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    pid: child.pid!,
    logs,
    exited: () => exit,
    async crash() {
      child.kill('SIGKILL');
      await exit;
    },
    async stop() {
      child.kill('SIGTERM');
      return exit;
    },
  };
}
