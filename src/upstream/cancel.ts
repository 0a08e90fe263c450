/**
 * Cancellation of one client request's upstream work: the running attempt or the pause between
 * two attempts. A plain object rather than an AbortController, because there is one per request
 * on the hot path and only ever one listener (the heap profile put AbortSignal at 1.4 kB and
 * 3 % of the CPU per request).
 */
export class Cancel {
  private done = false;
  private hook: (() => void) | undefined;

  get aborted(): boolean {
    return this.done;
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    const hook = this.hook;
    this.hook = undefined;
    hook?.();
  }

  /** Sets what `abort()` runs (replacing the previous hook); runs it at once if already aborted. */
  onAbort(hook: (() => void) | undefined): void {
    if (this.done) hook?.();
    else this.hook = hook;
  }
}

/**
 * Cancels of several upstream calls made for one purpose (the items of a list, the follower's
 * reads), aborted together. A `Cancel` holds one hook only, so concurrent calls each get their own.
 */
export class CancelGroup {
  private readonly members = new Set<Cancel>();
  private done = false;

  get aborted(): boolean {
    return this.done;
  }

  /** A new member; already aborted when the group is. Release it when its call is over. */
  create(): Cancel {
    const c = new Cancel();
    if (this.done) c.abort();
    else this.members.add(c);
    return c;
  }

  release(c: Cancel): void {
    this.members.delete(c);
  }

  abort(): void {
    this.done = true;
    for (const c of this.members) c.abort();
    this.members.clear();
  }
}
