/**
 * The embedded store's writer thread: a worker thread with a connection of its own to the same
 * SQLite file, which runs each batch of the state writer in one transaction while the main thread
 * goes on serving. better-sqlite3 is synchronous, so on the main thread a flush of ~700 requests
 * held the event loop ≈ 9 ms (up to 25 ms): the gateway's own share of its latency tail.
 *
 * The main thread still decides everything: it turns the batch into a list of (statement,
 * parameters) pairs and packed per-request rows (batch-sink.ts, packed-rows.ts) and hands them
 * over; the thread only runs them, in order, in one transaction, and says whether it committed. WAL lets the main connection read meanwhile;
 * its own rare writes (keys, the sub-account API) wait for the lock like any second writer.
 *
 * The worker's code is a string (run with `eval`): it needs nothing but the driver, so it runs
 * the same from compiled `dist/` and from TypeScript sources under the test runner.
 */
import { Worker } from 'node:worker_threads';
import { unpackRows, type PackedRows } from './packed-rows.js';

/**
 * One statement to run (its index in the statement table, and its parameters; and a statement run
 * with the same parameters if the first changed no row), or rows packed for one (packed-rows.ts).
 */
export type WriteOp = readonly [statement: number, params: unknown, orElse?: number] | PackedRows;

export function isPacked(op: WriteOp): op is PackedRows {
  return !Array.isArray(op);
}

/**
 * The thread connection's page cache. better-sqlite3 builds SQLite with 16 MB per connection; this
 * one only appends rows and updates index leaves: with 4 MB, 1,000-row batches over 1 to 20,000
 * accounts were written within 5 % as fast (BENCHMARKS.md, "Round two"), and the gateway's peak
 * under the benchmark's load is ≈ 7 MB lower (the memory target is 150 MB).
 */
const WRITER_CACHE_KIB = 4_000;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createRequire } = require('node:module');
const Database = createRequire(workerData.base)(workerData.driver);
const db = new Database(workerData.file);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
db.pragma('foreign_keys = ON');
db.pragma('cache_size = -' + workerData.cacheKib);
const prepared = [];
const statement = (i) => prepared[i] || (prepared[i] = db.prepare(workerData.statements[i]));
const runOne = (i, params) => { statement(i).run(params); };
${unpackRows.toString()}
const runAll = db.transaction((ops) => {
  for (const op of ops) {
    if (!Array.isArray(op)) unpackRows(op, runOne);
    else if (statement(op[0]).run(op[1]).changes === 0 && op[2] !== undefined) runOne(op[2], op[1]);
  }
});
parentPort.on('message', (m) => {
  if (m.close) {
    db.close();
    parentPort.postMessage({ id: m.id, ok: true });
    return;
  }
  try {
    runAll(m.ops);
    parentPort.postMessage({ id: m.id, ok: true });
  } catch (err) {
    parentPort.postMessage({ id: m.id, ok: false, message: String((err && err.message) || err), code: err && err.code });
  }
});
`;

interface Reply {
  readonly id: number;
  readonly ok: boolean;
  readonly message?: string;
  readonly code?: string;
}

export class SqliteWriteThread {
  private worker: Worker | undefined;
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();

  constructor(
    private readonly opts: {
      readonly file: string;
      /** The driver package this process loaded, and a file URL to resolve it from. */
      readonly driver: string;
      readonly base: string;
      readonly statements: readonly string[];
    },
  ) {}

  /** Runs `ops` in one transaction on the thread; rejects (nothing written) if it rolled back. */
  run(ops: readonly WriteOp[]): Promise<void> {
    return this.send({ ops });
  }

  /** Closes the thread's connection and ends the thread (after the writes sent before). */
  async close(): Promise<void> {
    if (this.worker === undefined) return;
    const worker = this.worker;
    await this.send({ close: true }).catch(() => undefined);
    await worker.terminate();
  }

  private send(message: { ops: readonly WriteOp[] } | { close: true }): Promise<void> {
    const worker = this.started();
    const id = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      // Held only while a write is on its way: an idle thread never keeps the process alive,
      // and the last flush at shutdown is never abandoned.
      if (this.waiting.size === 1) worker.ref();
      // The packed rows' arrays move to the thread instead of being copied.
      const transfer: ArrayBuffer[] = [];
      if ('ops' in message) {
        for (const op of message.ops) {
          if (isPacked(op)) transfer.push(op.nums.buffer as ArrayBuffer, op.idx.buffer as ArrayBuffer);
        }
      }
      worker.postMessage({ id, ...message }, transfer);
    });
  }

  private started(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        file: this.opts.file,
        driver: this.opts.driver,
        base: this.opts.base,
        statements: this.opts.statements,
        cacheKib: WRITER_CACHE_KIB,
      },
    });
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const w = this.waiting.get(reply.id);
      if (w === undefined) return;
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) worker.unref();
      if (reply.ok) w.resolve();
      else w.reject(Object.assign(new Error(reply.message ?? 'SQLite write failed'), { code: reply.code }));
    });
    // A thread that died fails what it was given (the state writer keeps and retries it) and is
    // started again with the next write.
    const fail = (err: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the SQLite writer thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }
}
