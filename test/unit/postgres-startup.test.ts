// Start-up on PostgreSQL when something is wrong: an unreachable server, a server that never
// answers, a refused login, another instance on the same database. Each stops start-up with one
// sentence naming host, port and database (never the password), within the connect timeout.
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import {
  claimSoleInstance,
  type InstanceIdentity,
  type InstanceLiveness,
  type LiveInstance,
} from '../../src/store/instances.js';
import { openStore, StoreStartupError } from '../../src/store/store.js';
import { postgresTestRun } from '../support/test-databases.js';

const silent = pino({ level: 'silent' });
const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** A TCP port on 127.0.0.1 where nothing listens (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function startupError(dsn: string): Promise<{ error: unknown; ms: number }> {
  const config = loadConfig({ POSTGRES_DSN: dsn });
  const t0 = Date.now();
  try {
    const store = await openStore(config.store, silent);
    await store.close();
    return { error: undefined, ms: Date.now() - t0 };
  } catch (error: unknown) {
    return { error, ms: Date.now() - t0 };
  }
}

describe('PostgreSQL start-up failures', () => {
  let blackHole: Server | undefined;
  const held: Socket[] = [];
  afterEach(async () => {
    for (const s of held.splice(0)) s.destroy();
    await new Promise<void>((resolve) =>
      blackHole === undefined ? resolve() : blackHole.close(() => resolve()),
    );
    blackHole = undefined;
  });

  it('names host, port and database when nothing listens, at once', async () => {
    const port = await closedPort();
    const { error, ms } = await startupError(`postgres://gw:Hunter2Secret@127.0.0.1:${port}/money`);
    expect(error).toBeInstanceOf(StoreStartupError);
    expect((error as Error).message).toBe(
      `cannot connect to PostgreSQL at 127.0.0.1:${port}, database "money", user "gw": ` +
        'connection refused (is the server running and listening on that port?)',
    );
    expect(ms).toBeLessThan(5_000);
  });

  it('gives up after connect_timeout when the server accepts but never answers', async () => {
    blackHole = createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => blackHole!.listen(0, '127.0.0.1', resolve));
    const { port } = blackHole.address() as { port: number };
    const { error, ms } = await startupError(
      `host=127.0.0.1 port=${port} dbname=money user=gw password=Hunter2Secret connect_timeout=1`,
    );
    expect(error).toBeInstanceOf(StoreStartupError);
    expect((error as Error).message).toContain(`PostgreSQL at 127.0.0.1:${port}, database "money"`);
    expect((error as Error).message).toContain('no answer within 1 s');
    expect((error as Error).message).not.toContain('Hunter2Secret');
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(5_000);
  });

  it.runIf(postgresTestRun() !== undefined)('reports a refused login in the server’s words', async () => {
    const url = new URL(postgresTestRun()!.adminUrl);
    url.username = 'proxyxai_no_such_role';
    url.password = 'Hunter2Secret';
    url.searchParams.set('sslmode', 'disable');
    const { error } = await startupError(url.toString());
    expect(error).toBeInstanceOf(StoreStartupError);
    const message = (error as Error).message;
    expect(message).toContain(`PostgreSQL at ${url.hostname}:${url.port || 5432}`);
    expect(message).toMatch(/login refused: .*proxyxai_no_such_role/);
    expect(message).not.toContain('Hunter2Secret');
  });

  it.runIf(postgresTestRun() !== undefined)('says so when no schema of search_path exists', async () => {
    const url = new URL(postgresTestRun()!.adminUrl);
    url.searchParams.set('search_path', 'proxyxai_no_such_schema');
    url.searchParams.set('sslmode', 'disable');
    const { error } = await startupError(url.toString());
    expect(error).toBeInstanceOf(StoreStartupError);
    expect((error as Error).message).toMatch(
      /no schema of search_path "proxyxai_no_such_schema" exists \(create it first\)$/,
    );
  });

  it('prints one line and exits 1 from the real process', async () => {
    const port = await closedPort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: REPO,
      env: {
        PATH: process.env['PATH'] ?? '',
        POSTGRES_DSN: `postgres://gw:Hunter2Secret@127.0.0.1:${port}/money`,
        INIT_USERS: `root:root@example.com:sk-Xvs${'a'.repeat(45)}`,
        MASTER_KEY: 'c'.repeat(64),
        LOG_LEVEL: 'silent',
        PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(1);
    expect(stderr).toBe(
      `proxyxai: failed to start: cannot connect to PostgreSQL at 127.0.0.1:${port}, database "money", ` +
        'user "gw": connection refused (is the server running and listening on that port?)\n',
    );
  });
});

/** The instances table in memory, for the policy and the heartbeat loop. */
function memoryLiveness(): InstanceLiveness & { rows: Map<string, LiveInstance>; beats: number } {
  const rows = new Map<string, LiveInstance>();
  const m = {
    rows,
    beats: 0,
    register(self: InstanceIdentity, _stale: number, admit: (o: readonly LiveInstance[]) => boolean) {
      const others = [...rows.values()].filter((r) => r.id !== self.id);
      if (!admit(others)) return Promise.resolve({ registered: false, others });
      rows.set(self.id, { ...self, startedAt: 0, heartbeatAt: 0, silentMs: 0 });
      return Promise.resolve({ registered: true, others });
    },
    beat(id: string) {
      m.beats++;
      return Promise.resolve(rows.has(id));
    },
    remove(id: string) {
      rows.delete(id);
      return Promise.resolve();
    },
  };
  return m;
}

describe('the single-instance guard', () => {
  it('refuses a second instance with who and where, and lets the first beat until it stops', async () => {
    const liveness = memoryLiveness();
    const first = await claimSoleInstance(liveness, 'PostgreSQL gw@db:5432/money', silent, {
      intervalMs: 10,
    });
    const err = await claimSoleInstance(liveness, 'PostgreSQL gw@db:5432/money', silent).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StoreStartupError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^another proxyxai instance is running \\(${first.self.id.slice(0, 8)} on host "[^"]+", pid ${process.pid}, ` +
          'last heartbeat 0 s ago\\) on PostgreSQL gw@db:5432/money\\. Without REDIS_ADDR an instance must be alone ' +
          'on its database \\(its balances live in its memory\\): to run several, give every instance the same ' +
          'REDIS_ADDR; otherwise stop the other one first\\. If it crashed, start again once its last heartbeat is ' +
          'more than 20 s old\\.$',
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(liveness.beats).toBeGreaterThanOrEqual(2);
    await first.stop();
    expect(liveness.rows.size).toBe(0);
    // Stopped: the next start is admitted at once.
    await (await claimSoleInstance(liveness, 'x', silent)).stop();
  });

  it('registers again when its row vanished while it was silent, unless another took over', async () => {
    const liveness = memoryLiveness();
    const first = await claimSoleInstance(liveness, 'x', silent, { intervalMs: 10 });
    liveness.rows.clear();
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect([...liveness.rows.keys()]).toEqual([first.self.id]);
    await first.stop();
  });
});
