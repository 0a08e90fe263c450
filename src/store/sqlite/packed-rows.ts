/**
 * The per-request rows of a batch (a usage record and a ledger row per request), packed for the
 * writer thread: numbers in a Float64Array and strings as indexes into one string table, both
 * arrays moved to the thread without a copy. Handed over as arrays of values (the structured clone
 * walks every value), a request's two rows cost ≈ 1.1 µs of the event loop and ≈ 1.0 µs of the
 * thread; packed, ≈ 0.4 and ≈ 0.4 µs (`npm run bench:handover`).
 *
 * A row's parameters are written in the order of its statement's columns, and `shape` says for
 * each parameter whether it is the next number (`n`) or the next string (`s`): the thread rebuilds
 * the very parameter lists the statements were given before. `null` is NaN among the numbers and
 * -1 among the string indexes (no row column holds NaN: the store would keep it as NULL anyway).
 */
import type { LedgerRow, UsageRow } from '../batch-sink.js';

export interface PackedRows {
  /** Statement run with `perStatement` rows at a time, and the one for the rest. */
  readonly many: number;
  readonly one: number;
  readonly perStatement: number;
  /** `n` or `s` per parameter of one row. */
  readonly shape: string;
  readonly count: number;
  readonly nums: Float64Array;
  readonly idx: Int32Array;
  readonly strs: readonly string[];
}

/** Fills the arrays of one PackedRows; repeated strings (a model, a day) are sent once. */
class Packer {
  private n = 0;
  private s = 0;
  readonly strs: string[] = [];
  private readonly seen = new Map<string, number>();
  readonly nums: Float64Array;
  readonly idx: Int32Array;

  constructor(
    private readonly rows: number,
    private readonly shape: string,
  ) {
    let numbers = 0;
    for (let i = 0; i < shape.length; i++) if (shape.charCodeAt(i) === 110) numbers++;
    this.nums = new Float64Array(rows * numbers);
    this.idx = new Int32Array(rows * (shape.length - numbers));
  }

  num(v: number | null): void {
    this.nums[this.n++] = v === null ? NaN : v;
  }

  /** A string that repeats across rows. */
  str(v: string | null): void {
    if (v === null) {
      this.idx[this.s++] = -1;
      return;
    }
    let at = this.seen.get(v);
    if (at === undefined) {
      at = this.strs.push(v) - 1;
      this.seen.set(v, at);
    }
    this.idx[this.s++] = at;
  }

  /** A string unique to its row (a request id): no lookup. */
  uniq(v: string | null): void {
    this.idx[this.s++] = v === null ? -1 : this.strs.push(v) - 1;
  }

  /** The rows packed, for the statements that take them. */
  done(many: number, one: number, perStatement: number): PackedRows {
    const { shape, rows: count, nums, idx, strs } = this;
    return { many, one, perStatement, shape, count, nums, idx, strs };
  }
}

/** Same order as the SQLite sink's USAGE_COLUMNS. */
export const USAGE_SHAPE = 'snsssnnnnnsnsnnnnnnnnnss';

export function packUsage(
  rows: readonly UsageRow[],
  many: number,
  one: number,
  perStatement: number,
): PackedRows {
  const p = new Packer(rows.length, USAGE_SHAPE);
  for (const u of rows) {
    p.uniq(u.request_id);
    p.num(u.account_id);
    p.str(u.model);
    p.str(u.path);
    p.str(u.day);
    p.num(u.prompt_tokens);
    p.num(u.cached_tokens);
    p.num(u.completion_tokens);
    p.num(u.cost);
    p.num(u.status);
    p.str(u.outcome);
    p.num(u.attempts);
    p.str(u.usage_source);
    p.num(u.created_at);
    p.num(u.stream);
    p.num(u.reasoning_tokens);
    p.num(u.images);
    p.num(u.audio_ms);
    p.num(u.characters);
    p.num(u.rates);
    p.num(u.latency_ms);
    p.num(u.ttfb_ms);
    p.str(u.client_ip);
    p.str(u.error_code);
  }
  return p.done(many, one, perStatement);
}

/** account_id, kind, amount, request_id, note, created_at. */
export const LEDGER_SHAPE = 'nsnssn';

export function packLedger(
  rows: readonly LedgerRow[],
  many: number,
  one: number,
  perStatement: number,
): PackedRows {
  const p = new Packer(rows.length, LEDGER_SHAPE);
  for (const l of rows) {
    p.num(l.account_id);
    p.str(l.kind);
    p.num(l.amount);
    p.uniq(l.request_id);
    p.str(l.note);
    p.num(l.created_at);
  }
  return p.done(many, one, perStatement);
}

/**
 * Calls `run` with each statement and its parameters, `perStatement` rows at a time and the rest
 * one by one. Self-contained on purpose (no imports, no inner functions): the writer thread's
 * source embeds its text (write-thread.ts).
 */
export function unpackRows(p: PackedRows, run: (statement: number, params: unknown[]) => void): void {
  const width = p.shape.length;
  let n = 0;
  let s = 0;
  let row = 0;
  while (row < p.count) {
    const take = p.count - row >= p.perStatement ? p.perStatement : 1;
    const params: unknown[] = new Array<unknown>(take * width);
    let k = 0;
    for (let r = 0; r < take; r++) {
      for (let c = 0; c < width; c++) {
        if (p.shape.charCodeAt(c) === 110) {
          const v = p.nums[n++] as number;
          params[k++] = Number.isNaN(v) ? null : v;
        } else {
          const i = p.idx[s++] as number;
          params[k++] = i < 0 ? null : p.strs[i];
        }
      }
    }
    run(take === 1 ? p.one : p.many, params);
    row += take;
  }
}
