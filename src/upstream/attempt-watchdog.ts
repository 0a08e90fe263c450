/**
 * The upstream attempts' timeouts, kept by the gateway instead of undici: the wait for response
 * headers, and the silence allowed inside a response body while the gateway is reading it.
 *
 * Why not undici's own: its parser swaps a headers/body timer for a keep-alive timer after every
 * response, so each request on a kept-alive connection made a new "fast timer", and a cleared fast
 * timer stays in undici's list until its next sweep (≈ 0.5–1 s). Under load that was ≈ 4,000 live
 * timers (≈ 290 kB) copied by every scavenge, then promoted: the largest share of what a request
 * left alive after it ended (BENCHMARKS.md, "Round two"). Here an attempt costs no timer at all:
 * attempts are linked into one list, and one interval walks it a few times a second. The
 * resolution is that interval's, as undici's fast timers' was about half a second.
 */
export interface Watched {
  /** While waiting for headers: when they are late (ms, performance.now()). */
  headersBy: number;
  /** Body chunks seen so far (counted by the attempt; read by the watchdog). */
  chunks: number;
  /** The gateway stopped reading (back-pressure): silence is not upstream's fault then. */
  paused: boolean;
  /** Watchdog bookkeeping: chunk count at the last check, and since when it has not moved. */
  seenChunks: number;
  quietSince: number;
  /** 'headers' until the response head arrives, then 'body'. */
  phase: 'headers' | 'body';
  prev: Watched | undefined;
  next: Watched | undefined;
  /** Called once when the attempt ran out of time (the watchdog has unlinked it already). */
  expire(kind: 'headers' | 'body'): void;
}

export class AttemptWatchdog {
  private head: Watched | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** Longest silence inside a response body while it is being read. */
    private readonly idleMs: number,
    private readonly checkEveryMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  watch(a: Watched): void {
    a.prev = undefined;
    a.next = this.head;
    if (this.head !== undefined) this.head.prev = a;
    this.head = a;
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.check(), this.checkEveryMs);
      this.timer.unref();
    }
  }

  /** The attempt's response began: from now on, its body's silences are timed. */
  bodyStarted(a: Watched): void {
    a.phase = 'body';
    a.seenChunks = a.chunks;
    a.quietSince = this.now();
  }

  /** Reading resumes after a pause: the silence is counted afresh (as undici refreshed its timer). */
  resumed(a: Watched): void {
    a.paused = false;
    a.seenChunks = a.chunks;
    a.quietSince = this.now();
  }

  unwatch(a: Watched): void {
    if (a.prev === undefined && this.head !== a) return; // not in the list
    if (a.prev !== undefined) a.prev.next = a.next;
    else this.head = a.next;
    if (a.next !== undefined) a.next.prev = a.prev;
    a.prev = undefined;
    a.next = undefined;
    if (this.head === undefined && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Stops the interval (the client is closing). */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private check(): void {
    const now = this.now();
    for (let a = this.head; a !== undefined;) {
      const next = a.next;
      if (a.phase === 'headers') {
        if (now >= a.headersBy) this.expire(a, 'headers');
      } else if (a.paused || a.chunks !== a.seenChunks) {
        a.seenChunks = a.chunks;
        a.quietSince = now;
      } else if (now - a.quietSince >= this.idleMs) {
        this.expire(a, 'body');
      }
      a = next;
    }
  }

  private expire(a: Watched, kind: 'headers' | 'body'): void {
    this.unwatch(a);
    a.expire(kind);
  }
}
