/**
 * Incremental scanner for upstream Server-Sent-Event streams (chat/completions, completions,
 * responses), run on every streamed chunk. It
 * - forwards only complete events (up to the last blank line) and holds back an incomplete tail,
 *   so the usage event can be removed whole and never leaks half-way to the client;
 * - finds the event carrying a non-null `"usage":{...}` and parses only that one (with
 *   `include_usage` OpenAI puts `"usage":null` on every other chunk);
 * - removes that event when the gateway itself asked for usage (`stripUsageChunk`) and it is the
 *   usage-only chunk (`"choices":[]`). A usage event that also carries choices is forwarded
 *   unchanged: dropping it would lose content, and a client can ignore an unexpected field;
 * - remembers what was delivered so that, when no usage ever arrives (client disconnect, broken
 *   stream), `finish()` can return the delivered text for counting with the tokenizer.
 *
 * Performance: the common path per chunk is one or two native `Buffer` searches for `usage"` plus a
 * few byte comparisons (event boundary, trailing `[DONE]`), no string conversion and no
 * JSON.parse; a chunk that ends on an event boundary is returned as the very same Buffer.
 *
 * Memory: until usage arrives, delivered events are copied into a small window of the tracker's
 * own (`maxKeptBytes`, 512 bytes, two or three events) and, each time it fills, parsed into the
 * text they carry, a few bytes per event. Every event is parsed once either way; the window only
 * saves a string conversion per event. Views of the upstream chunks instead pinned every chunk of the stream (each a
 * buffer of its own, about 300 bytes of overhead beside its data) for as long as the stream ran:
 * most of the gateway's memory per concurrent stream, and without bound for long answers.
 * A stream that gets its usage before the window fills (most) never parses anything.
 *
 * Supported framing: `\n` and `\r\n` line endings (mixed too); bare `\r` line endings are not.
 * Never throws on garbage: non-JSON data lines are forwarded and ignored.
 */
import { usageFromOpenAI, type Usage } from './cost.js';
import { collectText, dataPayloads, isRecord } from './sse-text.js';

export interface SseUsageTrackerOptions {
  /** True when the gateway added `stream_options.include_usage` and the client did not ask for it. */
  readonly stripUsageChunk: boolean;
  /** Bytes of delivered events kept for the no-usage fallback before they are parsed into text. */
  readonly maxKeptBytes?: number;
  /**
   * An incomplete event larger than this is forwarded anyway (unscanned) rather than buffered
   * without bound: a protection against an upstream that never sends event boundaries.
   */
  readonly maxPendingBytes?: number;
}

export interface SseFinish {
  /** The last usage object seen (parsed with `usageFromOpenAI`), if any. */
  usage?: Usage;
  /**
   * Text delivered to the client (content, refusals, tool-call names/arguments, transcripts), for
   * counting completion tokens. Only computed when no usage was seen; empty otherwise.
   */
  deliveredText: string;
  /**
   * The stream ended normally: its last event is `data: [DONE]` (chat/completions), or a terminal
   * `response.completed` / `response.incomplete` event with usage was seen (responses API).
   */
  sawDone: boolean;
  /** Held-back bytes of an unterminated last event, for the caller to flush to the client. */
  tail: Buffer;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const TAB = 0x09;
const COLON = 0x3a;
const LBRACE = 0x7b;
const LFLF = Buffer.from('\n\n');
const LFCRLF = Buffer.from('\n\r\n');
const QUOTE = 0x22;
const USAGE_KEY = Buffer.from('usage"');
const DONE_LINE = Buffer.from('data:[DONE]');
const EMPTY = Buffer.alloc(0);

// Remainders up to this many bytes are searched in JS rather than with a native call.
const SHORT_SCAN = 32;

const DEFAULT_MAX_KEPT_BYTES = 512;
const DEFAULT_MAX_PENDING_BYTES = 16 * 1024 * 1024;

export class SseUsageTracker {
  private readonly strip: boolean;
  private readonly maxKeptBytes: number;
  private readonly maxPendingBytes: number;

  // Incomplete tail: pieces concatenated only once the event completes (no quadratic copying
  // when one large event arrives in many small chunks).
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  // Last two bytes of the pending tail, for a boundary that straddles two chunks (-1: none).
  private prev1 = -1;
  private prev2 = -1;

  private usage: Usage | undefined;
  // Whether the last event so far is `data: [DONE]` (it is the last event of an OpenAI stream).
  private lastWasDone = false;
  // A terminal responses-API event (`response.completed` / `response.incomplete`) was seen.
  private sawTerminal = false;
  // Delivered events not parsed yet: a window of the tracker's own, allocated on first use.
  private kept: Buffer = EMPTY;
  private keptBytes = 0;
  private readonly textParts: string[] = [];
  // Text of the events parsed so far, beyond `textParts`.
  private text = '';

  constructor(options: SseUsageTrackerOptions) {
    this.strip = options.stripUsageChunk;
    this.maxKeptBytes = options.maxKeptBytes ?? DEFAULT_MAX_KEPT_BYTES;
    this.maxPendingBytes = options.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES;
  }

  /** Feeds one upstream chunk; returns the bytes to forward to the client now (possibly empty). */
  push(chunk: Buffer): Buffer {
    if (chunk.length === 0) return EMPTY;
    const end = this.boundaryEnd(chunk);
    if (end === -1) {
      this.hold(chunk);
      if (this.pendingBytes > this.maxPendingBytes) return this.takePending();
      return EMPTY;
    }
    let region: Buffer;
    if (this.pendingBytes === 0) {
      region = end === chunk.length ? chunk : chunk.subarray(0, end);
    } else {
      this.pending.push(chunk.subarray(0, end));
      region = Buffer.concat(this.pending, this.pendingBytes + end);
      this.pending = [];
      this.pendingBytes = 0;
      this.prev1 = this.prev2 = -1;
    }
    // A view, not a copy: it pins the chunk only until the next push completes the event.
    if (end < chunk.length) this.hold(chunk.subarray(end));
    return this.scan(region);
  }

  /**
   * The events forwarded so far end the stream (`data: [DONE]`, or a terminal responses-API event):
   * what the relay holds back until the request's settlement is journaled.
   */
  get ended(): boolean {
    return this.lastWasDone || this.sawTerminal;
  }

  /** Ends the stream: scans the unterminated tail as a last event and reports what was metered. */
  finish(): SseFinish {
    let tail = this.takePending();
    if (tail.length > 0) tail = this.scan(tail);
    let deliveredText = '';
    if (this.usage === undefined) {
      this.compact();
      deliveredText = this.text + this.textParts.join('');
    }
    this.kept = EMPTY;
    this.keptBytes = 0;
    return {
      ...(this.usage !== undefined && { usage: this.usage }),
      deliveredText,
      sawDone: this.lastWasDone || this.sawTerminal,
      tail,
    };
  }

  private hold(piece: Buffer): void {
    this.pending.push(piece);
    this.pendingBytes += piece.length;
    const n = piece.length;
    if (n >= 2) {
      this.prev2 = piece[n - 2] ?? -1;
      this.prev1 = piece[n - 1] ?? -1;
    } else if (n === 1) {
      this.prev2 = this.prev1;
      this.prev1 = piece[0] ?? -1;
    }
  }

  private takePending(): Buffer {
    if (this.pendingBytes === 0) return EMPTY;
    const out = this.pending.length === 1 ? (this.pending[0] ?? EMPTY) : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    this.prev1 = this.prev2 = -1;
    return out;
  }

  /** Index in `chunk` just after the last event boundary (`\n\n` or `\n\r\n`), or -1. */
  private boundaryEnd(chunk: Buffer): number {
    const n = chunk.length;
    // Fast path: upstream usually writes whole events, so the chunk ends on a boundary.
    if (chunk[n - 1] === LF) {
      const b = n >= 2 ? chunk[n - 2] : this.prev1;
      if (b === LF) return n;
      if (b === CR && (n >= 3 ? chunk[n - 3] : n === 2 ? this.prev1 : this.prev2) === LF) return n;
    }
    const a = chunk.lastIndexOf(LFLF);
    const c = chunk.lastIndexOf(LFCRLF);
    const end = Math.max(a === -1 ? -1 : a + 2, c === -1 ? -1 : c + 3);
    if (end !== -1) return end;
    // A boundary split across the previous chunk and this one.
    const c0 = chunk[0];
    if (c0 === LF && (this.prev1 === LF || (this.prev1 === CR && this.prev2 === LF))) return 1;
    if (c0 === CR && chunk[1] === LF && this.prev1 === LF) return 2;
    return -1;
  }

  /** Inspects a run of complete events; returns it, minus the usage event when stripping. */
  private scan(region: Buffer): Buffer {
    if (region.length === 0) return region;
    this.lastWasDone = endsWithDone(region);
    let out = region;
    // Keep scanning after a usage was found: the last usage wins (some upstreams report running
    // totals), and OpenAI sends nothing but `[DONE]` after its usage chunk anyway.
    // The needle is `usage"` rather than `"usage"`: Buffer#indexOf is several times slower on a
    // needle starting with `"`, the most frequent byte in JSON; the quote is checked by hand.
    let pos = findUsageKey(region, 0);
    while (pos !== -1) {
      let next = pos + USAGE_KEY.length;
      if (region[pos - 1] === QUOTE && objectFollows(region, next)) {
        const start = eventStart(region, pos);
        const end = eventEnd(region, pos);
        next = end;
        if (this.onUsageEvent(region.subarray(start, end))) {
          // Only one usage-only event per stream: a single copy, off the common path.
          out = Buffer.concat([out.subarray(0, start - (region.length - out.length)), region.subarray(end)]);
        }
      }
      pos = findUsageKey(region, next);
    }
    if (this.usage === undefined) this.keep(out);
    else if (this.kept !== EMPTY) {
      this.kept = EMPTY;
      this.keptBytes = 0;
    }
    return out;
  }

  /** Parses an event that mentions `"usage":{`; returns true when it must be stripped. */
  private onUsageEvent(event: Buffer): boolean {
    const obj = parseEventJson(event);
    if (!isRecord(obj)) return false;
    const response = obj['response'];
    const raw = isRecord(obj['usage']) ? obj['usage'] : isRecord(response) ? response['usage'] : undefined;
    const usage = usageFromOpenAI(raw);
    if (usage === undefined) return false;
    this.usage = usage;
    const type = obj['type'];
    if (type === 'response.completed' || type === 'response.incomplete') this.sawTerminal = true;
    const choices = obj['choices'];
    return this.strip && Array.isArray(choices) && choices.length === 0;
  }

  /** Copies complete events into the window, parsing it into text first when they do not fit. */
  private keep(region: Buffer): void {
    if (region.length === 0) return;
    if (this.keptBytes + region.length > this.maxKeptBytes) {
      this.compact();
      // Larger than the whole window: parsed at once, never copied.
      if (region.length > this.maxKeptBytes) return this.collect(region.toString('utf8'));
    }
    // Below 4 KiB, allocUnsafe slices Node's shared pool: a few windows share one allocation.
    if (this.kept === EMPTY) this.kept = Buffer.allocUnsafe(this.maxKeptBytes);
    this.keptBytes += region.copy(this.kept, this.keptBytes);
  }

  /** Parses the kept events into delivered text and empties the window (kept for reuse). */
  private compact(): void {
    if (this.keptBytes === 0) return;
    const text = this.kept.toString('utf8', 0, this.keptBytes);
    this.keptBytes = 0;
    this.collect(text);
    // A few characters per event, a string each: joined every few events (one rope node each time).
    if (this.textParts.length > 16) {
      this.text += this.textParts.join('');
      this.textParts.length = 0;
    }
  }

  /** Appends the client-visible text of complete events. */
  private collect(text: string): void {
    for (const payload of dataPayloads(text)) {
      if (payload.charCodeAt(0) !== LBRACE) continue;
      let obj: unknown;
      try {
        obj = JSON.parse(payload);
      } catch {
        continue;
      }
      collectText(obj, this.textParts);
    }
  }
}

/**
 * `buf.indexOf('usage"', from)`, but short remainders (typically the `null}\n\n` after OpenAI's
 * trailing `"usage"` key) are scanned in JS: a native call costs more than checking a few bytes.
 */
function findUsageKey(buf: Buffer, from: number): number {
  const n = buf.length;
  if (n - from > SHORT_SCAN) return buf.indexOf(USAGE_KEY, from);
  const last = n - USAGE_KEY.length;
  outer: for (let i = from; i <= last; i++) {
    for (let j = 0; j < USAGE_KEY.length; j++) if (buf[i + j] !== USAGE_KEY[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Whether the last event of `buf` is `data: [DONE]`. `[DONE]` terminates OpenAI streams, so only
 * the end of each run of events needs checking: a few byte comparisons instead of a search, and
 * the answer does not depend on how the stream was split into chunks.
 */
function endsWithDone(buf: Buffer): boolean {
  let i = buf.length - 1;
  while (i >= 0 && (buf[i] === LF || buf[i] === CR)) i--;
  // Compare backwards against `data:[DONE]`, allowing one space after the colon.
  let j = DONE_LINE.length - 1;
  for (; j >= 0 && i >= 0; j--, i--) {
    if (buf[i] === DONE_LINE[j]) continue;
    if (j === 4 && buf[i] === SP) {
      j++;
      continue;
    }
    return false;
  }
  return j < 0 && (i < 0 || buf[i] === LF || buf[i] === CR);
}

/** The needle at `i - 6` is followed by `: {` (spaces allowed), i.e. a non-null usage object. */
function objectFollows(buf: Buffer, i: number): boolean {
  while (buf[i] === SP || buf[i] === TAB) i++;
  if (buf[i] !== COLON) return false;
  i++;
  while (buf[i] === SP || buf[i] === TAB) i++;
  return buf[i] === LBRACE;
}

/** Start of the event containing `pos`: just after the previous boundary, or 0. */
function eventStart(buf: Buffer, pos: number): number {
  const a = buf.lastIndexOf(LFLF, pos);
  const c = buf.lastIndexOf(LFCRLF, pos);
  return Math.max(a === -1 ? 0 : a + 2, c === -1 ? 0 : c + 3);
}

/** End of the event containing `pos`: just after its boundary, or the end of `buf`. */
function eventEnd(buf: Buffer, pos: number): number {
  const a = buf.indexOf(LFLF, pos);
  const c = buf.indexOf(LFCRLF, pos);
  const ea = a === -1 ? buf.length : a + 2;
  const ec = c === -1 ? buf.length : c + 3;
  return Math.min(ea, ec);
}

/** JSON of one event's `data:` lines (joined by `\n` per the SSE spec), or undefined. */
function parseEventJson(event: Buffer): unknown {
  for (const payload of dataPayloads(event.toString('utf8'))) {
    if (payload.charCodeAt(0) !== LBRACE) continue;
    try {
      return JSON.parse(payload);
    } catch {
      return undefined;
    }
  }
  return undefined;
}
