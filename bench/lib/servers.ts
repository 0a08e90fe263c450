/**
 * The two servers every benchmark measures against: the mock upstream (on the load CPU) and the
 * reference proxy (on the proxy CPU), each a plain-JS child process (no loader in the measured
 * process) answering /healthz before it is used.
 */
import { join } from 'node:path';
import { CPU_LOAD, CPU_PROXY } from './context.js';
import { REPO_ROOT } from './gateway.js';
import { freePort, startNode, transpileScript, waitReady, type Proc } from './procs.js';

export interface Server {
  readonly proc: Proc;
  readonly url: string;
}

/** Transpiles bench/mock-upstream.ts into `work` and starts it; logs to `logDir`/mock.log. */
export async function startMock(work: string, logDir = work): Promise<Server> {
  const mockJs = transpileScript(join(REPO_ROOT, 'bench/mock-upstream.ts'), work);
  const port = await freePort();
  const proc = startNode({
    name: 'mock',
    args: [mockJs],
    env: { PORT: String(port) },
    cpu: CPU_LOAD,
    logFile: join(logDir, 'mock.log'),
  });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(proc, `${url}/healthz`);
  return { proc, url };
}

/** Starts the transpiled reference proxy `refJs` (see `transpileReference`) in front of `mockUrl`. */
export async function startReference(
  refJs: string,
  mockUrl: string,
  logDir: string,
  name = 'reference',
): Promise<Server> {
  const port = await freePort();
  const proc = startNode({
    name,
    args: [refJs],
    env: { PORT: String(port), UPSTREAM: mockUrl, UPSTREAM_KEY: 'sk-reference-upstream' },
    cpu: CPU_PROXY,
    logFile: join(logDir, `${name}.log`),
  });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(proc, `${url}/healthz`);
  return { proc, url };
}

/** bench/reference-proxy.ts transpiled into `work`, for `startReference`. */
export function transpileReference(work: string): string {
  return transpileScript(join(REPO_ROOT, 'bench/reference-proxy.ts'), work);
}
