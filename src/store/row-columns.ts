/**
 * The usage and ledger rows the state writer holds until its next flush, kept column by column:
 * numbers in Float64Arrays, strings in plain arrays, all reused from one flush to the next. Rows
 * wait up to a flush interval (≈ 1,000 requests under load), long enough to survive two scavenges:
 * kept as objects, each request's rows (≈ 350 bytes) were copied twice in the young generation and
 * then promoted, and the old generation filled with them between major collections (a
 * mark-compact every second or two under load, each a stall of the event loop). Here a row costs
 * no object at all until the flush, which rebuilds the rows it hands to the store in one step.
 *
 * `null` is NaN among the numbers (no column holds NaN: the store would keep it as NULL anyway).
 */
import type { LedgerRow, UsageRow } from './batch-sink.js';

/** Rows held before the columns grow: about one flush under load (STATS_INTERVAL, 1,000). */
const START_CAPACITY = 1024;
/** Past this, a flush that empties the columns also gives their memory back. */
const SHRINK_ABOVE = 8 * START_CAPACITY;

/** Growable Float64Array columns and string columns of one row type. */
class Columns {
  private cap = START_CAPACITY;
  length = 0;
  nums: Float64Array[];
  readonly strs: Array<Array<string | null>>;

  constructor(numbers: number, strings: number) {
    const capacity = START_CAPACITY;
    this.nums = Array.from({ length: numbers }, () => new Float64Array(capacity));
    // Filled with null up to the capacity and reused: arrays that keep their size live in the old
    // generation after the first flushes, instead of being reallocated as they grow each time.
    this.strs = Array.from({ length: strings }, () => new Array<string | null>(capacity).fill(null));
  }

  /** Index of the next row, growing the number columns when they are full. */
  protected next(): number {
    const i = this.length++;
    if (i === this.cap) {
      this.cap *= 2;
      this.nums = this.nums.map((col) => {
        const bigger = new Float64Array(this.cap);
        bigger.set(col);
        return bigger;
      });
    }
    return i;
  }

  /**
   * Forgets every row; the string columns drop their references so the strings can go. Columns
   * grown far past their start (a backlog while the store was unreachable) go back to it.
   */
  protected reset(): void {
    const used = this.length;
    this.length = 0;
    if (this.cap > SHRINK_ABOVE) {
      this.cap = START_CAPACITY;
      this.nums = this.nums.map(() => new Float64Array(START_CAPACITY));
      for (let c = 0; c < this.strs.length; c++)
        this.strs[c] = new Array<string | null>(START_CAPACITY).fill(null);
      return;
    }
    for (const col of this.strs) col.fill(null, 0, used);
  }
}

type F = Float64Array;
type S = string[];
type NS = Array<string | null>;

const num = (v: number | null): number => (v === null ? NaN : v);
const orNull = (v: number): number | null => (Number.isNaN(v) ? null : v);

export class UsageColumns extends Columns {
  constructor() {
    super(16, 8);
  }

  push(r: UsageRow): void {
    const i = this.next();
    const n = this.nums;
    const s = this.strs;
    (n[0] as Float64Array)[i] = r.account_id;
    (n[1] as Float64Array)[i] = r.prompt_tokens;
    (n[2] as Float64Array)[i] = r.cached_tokens;
    (n[3] as Float64Array)[i] = r.completion_tokens;
    (n[4] as Float64Array)[i] = r.cost;
    (n[5] as Float64Array)[i] = r.status;
    (n[6] as Float64Array)[i] = r.attempts;
    (n[7] as Float64Array)[i] = r.created_at;
    (n[8] as Float64Array)[i] = r.stream;
    (n[9] as Float64Array)[i] = r.reasoning_tokens;
    (n[10] as Float64Array)[i] = r.images;
    (n[11] as Float64Array)[i] = r.audio_ms;
    (n[12] as Float64Array)[i] = r.characters;
    (n[13] as Float64Array)[i] = r.rates;
    (n[14] as Float64Array)[i] = num(r.latency_ms);
    (n[15] as Float64Array)[i] = num(r.ttfb_ms);
    (s[0] as Array<string | null>)[i] = r.request_id;
    (s[1] as Array<string | null>)[i] = r.model;
    (s[2] as Array<string | null>)[i] = r.path;
    (s[3] as Array<string | null>)[i] = r.day;
    (s[4] as Array<string | null>)[i] = r.outcome;
    (s[5] as Array<string | null>)[i] = r.usage_source;
    (s[6] as Array<string | null>)[i] = r.client_ip;
    (s[7] as Array<string | null>)[i] = r.error_code;
  }

  /** Every row held, as objects again, and none held any more. */
  take(): UsageRow[] {
    const out: UsageRow[] = new Array<UsageRow>(this.length);
    const n = this.nums as Array<Float64Array>;
    const s = this.strs as Array<Array<string>>;
    // Sixteen number columns and eight string columns, made in the constructor.
    const [n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, n12, n13, n14, n15] = n as [
      F,
      F,
      F,
      F,
      F,
      F,
      F,
      F,
      F,
      F,
      F,
      F,
      F,
      F,
      F,
      F,
    ];
    const [s0, s1, s2, s3, s4, s5, s6, s7] = s as [S, S, S, S, S, S, NS, NS];
    for (let i = 0; i < this.length; i++) {
      out[i] = {
        request_id: s0[i] as string,
        account_id: n0[i] as number,
        model: s1[i] as string,
        path: s2[i] as string,
        day: s3[i] as string,
        prompt_tokens: n1[i] as number,
        cached_tokens: n2[i] as number,
        completion_tokens: n3[i] as number,
        cost: n4[i] as number,
        status: n5[i] as number,
        outcome: s4[i] as string,
        attempts: n6[i] as number,
        usage_source: s5[i] as string,
        created_at: n7[i] as number,
        stream: n8[i] as number,
        reasoning_tokens: n9[i] as number,
        images: n10[i] as number,
        audio_ms: n11[i] as number,
        characters: n12[i] as number,
        rates: n13[i] as number,
        latency_ms: orNull(n14[i] as number),
        ttfb_ms: orNull(n15[i] as number),
        client_ip: s6[i] ?? null,
        error_code: s7[i] ?? null,
      };
    }
    this.reset();
    return out;
  }
}

export class LedgerColumns extends Columns {
  constructor() {
    super(3, 3);
  }

  push(r: LedgerRow): void {
    const i = this.next();
    (this.nums[0] as Float64Array)[i] = r.account_id;
    (this.nums[1] as Float64Array)[i] = r.amount;
    (this.nums[2] as Float64Array)[i] = r.created_at;
    (this.strs[0] as Array<string | null>)[i] = r.kind;
    (this.strs[1] as Array<string | null>)[i] = r.request_id;
    (this.strs[2] as Array<string | null>)[i] = r.note;
  }

  take(): LedgerRow[] {
    const out: LedgerRow[] = new Array<LedgerRow>(this.length);
    const [account, amount, at] = this.nums as [Float64Array, Float64Array, Float64Array];
    const [kind, request, note] = this.strs as [string[], (string | null)[], (string | null)[]];
    for (let i = 0; i < this.length; i++) {
      out[i] = {
        account_id: account[i] as number,
        kind: kind[i] as string,
        amount: amount[i] as number,
        request_id: request[i] ?? null,
        note: note[i] ?? null,
        created_at: at[i] as number,
      };
    }
    this.reset();
    return out;
  }
}
