/**
 * The settlement journal: an append-only record, in DATA_DIR, of the settlements the state writer
 * has not written to the store yet. The writer batches settlements for up to FLUSH_INTERVAL_MS;
 * the journal is what makes them survive a `kill -9` meanwhile:
 *
 *  - every settlement is appended (`append`); all those of one event-loop turn go out in ONE write
 *    at the end of the turn (`setImmediate`);
 *  - the pipeline holds back the last bytes of an answer until `written()` resolves, so a client
 *    that holds a complete answer holds one whose settlement is on disk;
 *  - at start-up the files left by the previous process are read (`recovered`) and replayed for
 *    the settlements the store does not have (replay-journal.ts);
 *  - the writer calls `cut()` when it snapshots a batch and `covered(cut)` once that batch is in
 *    the store: the files written before the cut are then deleted. Each cut starts a new file, so
 *    a file is only ever deleted whole and never truncated under a write.
 *
 * Writes go to the page cache without fsync: that survives the death of the process, not of the
 * machine (power loss, kernel crash). With `fsync` every write is followed by fdatasync (off the
 * event loop, on the thread pool) before the answers it holds back are released.
 *
 * Without fsync the write itself is synchronous (`writeSync`, once per turn): an append of a few
 * hundred bytes to the page cache takes about a microsecond, where handing it to the thread pool
 * costs about 15 µs of CPU and 18 µs of latency (measured on the 2-core CI machine) — more than the
 * whole budget of the journal. better-sqlite3 writes synchronously for the same reason.
 */
import {
  closeSync,
  fdatasync,
  fsync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  unlinkSync,
  write,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { decodeEntries, encodeEntry, type SettlementEntry } from './settlement-entry.js';

/** What the meter needs: record a settlement, and know when what it recorded is written. */
export interface SettlementLog {
  append(entry: SettlementEntry): void;
  /** Resolves once every entry appended so far is written (or failed to be: it never rejects). */
  written(): Promise<void>;
}

/** What the state writer tells the journal (see `StateWriter`'s `journal` option). */
export interface JournalCuts {
  /** A batch was snapshotted: returns a mark for `covered`. Synchronous, at the snapshot. */
  cut(): number;
  /** The batch snapshotted at `cut` is in the store: what was written before it may go. */
  covered(cut: number): void;
}

export interface JournalOptions {
  /** The folder of the journal files (created when missing). */
  readonly dir: string;
  /** fdatasync every write before the answers it holds back are released. */
  readonly fsync: boolean;
  readonly log: Logger;
}

interface Segment {
  readonly number: number;
  readonly path: string;
  readonly fd: number;
}

const FILE = /^settlements-(\d+)\.jsonl$/;
const RESOLVED: Promise<void> = Promise.resolve();

function fileName(n: number): string {
  return `settlements-${String(n).padStart(8, '0')}.jsonl`;
}

export class SettlementJournal implements SettlementLog, JournalCuts {
  /** Entries of this turn, not written yet, and the promise their write resolves. */
  private lines: string[] = [];
  private turn: { promise: Promise<void>; resolve: () => void } | undefined;
  private immediate: NodeJS.Immediate | undefined;
  /** The latest write or deletion (with fsync they run one after another on the thread pool). */
  private last: Promise<void> = RESOLVED;
  /** With fsync: a write is in flight (what comes meanwhile joins the next one). */
  private syncing = false;
  /** The file appended to; opened at the first write after a cut. */
  private segment: Segment | undefined;
  /** Files closed for appends, deleted once a flush covers them. */
  private retired: Segment[] = [];
  /** Number of the next file, and of the next cut (both only grow). */
  private next: number;
  /** Files the previous process left, deleted once what they hold is in the store. */
  private leftover: string[];
  /** The first cut taken after the replay: from it on, a flush covers the leftover files. */
  private replayedCut: number | undefined;
  private failures = 0;
  private lastError: string | undefined;

  /** The entries the previous process left (read at open), in the order they were written. */
  readonly recovered: readonly SettlementEntry[];
  /** Lines of those files that were skipped (a write cut off by a kill). */
  readonly skipped: number;

  private constructor(
    private readonly opts: JournalOptions,
    found: { files: string[]; entries: SettlementEntry[]; skipped: number; next: number },
  ) {
    this.leftover = found.files;
    this.recovered = found.entries;
    this.skipped = found.skipped;
    this.next = found.next;
  }

  /** Opens the journal in `dir` and reads what a previous process left there. */
  static open(opts: JournalOptions): SettlementJournal {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    const numbered = journalFiles(opts.dir);
    const entries: SettlementEntry[] = [];
    let skipped = 0;
    for (const f of numbered) {
      const decoded = decodeEntries(readFileSync(f.path, 'utf8'));
      for (const e of decoded.entries) entries.push(e);
      skipped += decoded.skipped;
    }
    const last = numbered[numbered.length - 1]?.number ?? 0;
    return new SettlementJournal(opts, {
      files: numbered.map((f) => f.path),
      entries,
      skipped,
      next: last + 1,
    });
  }

  append(entry: SettlementEntry): void {
    this.lines.push(encodeEntry(entry));
    if (this.turn === undefined) {
      let resolve: () => void = () => undefined;
      const promise = new Promise<void>((r) => (resolve = r));
      this.turn = { promise, resolve };
      this.immediate = setImmediate(this.writeTurn);
    }
  }

  written(): Promise<void> {
    return this.turn?.promise ?? this.last;
  }

  /** Consecutive failed writes (0 when the last one succeeded), and the last error. */
  get health(): { readonly failures: number; readonly error: string | undefined } {
    return { failures: this.failures, error: this.lastError };
  }

  cut(): number {
    if (this.segment !== undefined) this.retired.push(this.segment);
    this.segment = undefined;
    return this.next++;
  }

  covered(cut: number): void {
    const gone = this.retired.filter((s) => s.number < cut);
    if (gone.length === 0 && !this.leftoverCovered(cut)) return;
    this.retired = this.retired.filter((s) => s.number >= cut);
    const files = this.leftoverCovered(cut) ? this.takeLeftover() : [];
    // With fsync a write to a retired file may still run: deletions wait their turn.
    if (this.opts.fsync) this.last = this.last.then(() => this.remove(gone, files));
    else this.remove(gone, files);
  }

  /**
   * The recovered entries have been applied to memory (and queued for the store): the next flush
   * covers the files they came from.
   */
  replayed(): void {
    this.replayedCut ??= this.next;
  }

  /** Every recovered entry is in the store already: the files they came from can go now. */
  dropRecovered(): void {
    this.replayed();
    this.remove([], this.takeLeftover());
  }

  /**
   * Writes what is pending and closes the files. `clean`: everything settled is in the store, so
   * nothing needs replaying and the files are deleted; otherwise they stay for the next start.
   */
  async close(clean: boolean): Promise<void> {
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    while (this.turn !== undefined || this.syncing) {
      this.writeTurn();
      await this.last;
    }
    const all = [...this.retired, ...(this.segment === undefined ? [] : [this.segment])];
    this.retired = [];
    this.segment = undefined;
    if (clean && this.replayedCut !== undefined) {
      this.remove(all, this.takeLeftover());
      // A graceful stop leaves no trace of the journal (the folder too, when nothing else is in it).
      try {
        rmdirSync(this.opts.dir);
      } catch {
        // Not empty, or already gone: nothing to tidy.
      }
      return;
    }
    for (const s of all) closeQuietly(s.fd);
  }

  private leftoverCovered(cut: number): boolean {
    return this.leftover.length > 0 && this.replayedCut !== undefined && cut >= this.replayedCut;
  }

  private takeLeftover(): string[] {
    const files = this.leftover;
    this.leftover = [];
    return files;
  }

  /** The end of a turn: one write for every settlement of the turn. */
  private readonly writeTurn = (): void => {
    const turn = this.turn;
    if (turn === undefined) return;
    this.immediate = undefined;
    // With fsync, what settles while a write is in flight joins the next write (a group commit):
    // the disk flushes once per write, not once per turn.
    if (this.opts.fsync && this.syncing) return;
    this.turn = undefined;
    const data = Buffer.from(this.lines.join(''));
    this.lines = [];
    if (!this.opts.fsync) {
      this.writeNow(data);
      turn.resolve();
      return;
    }
    this.syncing = true;
    const p = this.last.then(() => this.writeDurably(data));
    this.last = p;
    void p.then(() => {
      this.syncing = false;
      turn.resolve();
      if (this.turn !== undefined) this.writeTurn();
    });
  };

  private writeNow(data: Buffer): void {
    try {
      const fd = this.current().fd;
      for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off);
      this.succeeded();
    } catch (err: unknown) {
      this.failed(err);
    }
  }

  private async writeDurably(data: Buffer): Promise<void> {
    try {
      const fresh = this.segment === undefined;
      const fd = this.current().fd;
      for (let off = 0; off < data.length;) off += await writeAt(fd, data, off);
      await syncFd(fd, true);
      // A new file's name must survive a power loss too.
      if (fresh) await syncDir(this.opts.dir);
      this.succeeded();
    } catch (err: unknown) {
      this.failed(err);
    }
  }

  private current(): Segment {
    if (this.segment !== undefined) return this.segment;
    const number = this.next++;
    const path = join(this.opts.dir, fileName(number));
    const fd = openSync(path, 'a', 0o600);
    this.segment = { number, path, fd };
    return this.segment;
  }

  private succeeded(): void {
    if (this.failures > 0) this.opts.log.warn({ failures: this.failures }, 'settlement journal writes again');
    this.failures = 0;
    this.lastError = undefined;
  }

  /**
   * A failed write leaves its settlements in memory (the writer still flushes them) but not on disk.
   * The file may end in a torn line: the next write starts a new file, so a torn line is always the
   * last of its file and skipped alone when read.
   */
  private failed(err: unknown): void {
    this.failures++;
    this.lastError = err instanceof Error ? err.message : String(err);
    if (this.failures === 1 || this.failures % 1000 === 0)
      this.opts.log.error(
        { err, failures: this.failures },
        'cannot write the settlement journal: settlements not yet in the store would be lost by a crash',
      );
    if (this.segment !== undefined) this.retired.push(this.segment);
    this.segment = undefined;
  }

  private remove(segments: readonly Segment[], paths: readonly string[]): void {
    for (const s of segments) closeQuietly(s.fd);
    for (const p of [...segments.map((s) => s.path), ...paths]) {
      try {
        unlinkSync(p);
      } catch (err: unknown) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          this.opts.log.warn({ err, file: p }, 'could not delete a covered settlement journal file');
      }
    }
  }
}

/** The journal files in `dir` (none when it does not exist), oldest first. */
export function journalFiles(dir: string): Array<{ readonly path: string; readonly number: number }> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .map((name) => ({ name, m: FILE.exec(name) }))
    .filter((f): f is { name: string; m: RegExpExecArray } => f.m !== null)
    .map((f) => ({ path: join(dir, f.name), number: Number(f.m[1]) }))
    .sort((a, b) => a.number - b.number);
}

function writeAt(fd: number, data: Buffer, offset: number): Promise<number> {
  return new Promise((resolve, reject) =>
    write(fd, data, offset, data.length - offset, null, (e, n) => (e ? reject(e) : resolve(n))),
  );
}

function syncFd(fd: number, dataOnly: boolean): Promise<void> {
  return new Promise((resolve, reject) =>
    (dataOnly ? fdatasync : fsync)(fd, (e) => (e ? reject(e) : resolve())),
  );
}

async function syncDir(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await syncFd(fd, false);
  } finally {
    closeQuietly(fd);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed: nothing to release.
  }
}
