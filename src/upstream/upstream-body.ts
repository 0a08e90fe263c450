/**
 * The body of one upstream response, delivered as callbacks straight from undici's dispatch
 * handler: no Readable stream and no promise per chunk. Headers and a small body often arrive in
 * one packet, before the caller has attached a sink, so chunks (and the end) seen before
 * `attach` are held and replayed in order.
 */
/** What the body drives its upstream response through (the attempt, over undici's controller). */
export interface BodyControl {
  pause(): void;
  resume(): void;
  abort(reason: Error): void;
}

export interface BodySink {
  onData(chunk: Buffer): void;
  onEnd(): void;
  onError(err: Error): void;
}

type State =
  { readonly kind: 'open' } | { readonly kind: 'ended' } | { readonly kind: 'failed'; readonly error: Error };

const OPEN: State = { kind: 'open' };
const ENDED: State = { kind: 'ended' };

export class UpstreamBody {
  private sink: BodySink | undefined;
  private held: Buffer[] | undefined;
  private state: State = OPEN;
  private destroyed = false;

  constructor(private readonly controller: BodyControl) {}

  /** Starts delivery to `sink`: held chunks first, then live ones. */
  attach(sink: BodySink): void {
    this.sink = sink;
    const held = this.held;
    this.held = undefined;
    if (held !== undefined) {
      for (const chunk of held) {
        if (this.sink !== sink) return; // destroyed by the sink meanwhile
        sink.onData(chunk);
      }
    }
    if (this.sink !== sink) return;
    const state = this.state;
    if (state.kind === 'ended') sink.onEnd();
    else if (state.kind === 'failed') sink.onError(state.error);
  }

  /** Stops reading from upstream until `resume` (back-pressure from the client). */
  pause(): void {
    if (!this.destroyed) this.controller.pause();
  }

  resume(): void {
    if (!this.destroyed) this.controller.resume();
  }

  /** Drops the sink and, unless the body is complete, aborts the upstream request. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.sink = undefined;
    this.held = undefined;
    if (this.state.kind === 'open') this.controller.abort(new Error('upstream body discarded'));
  }

  // Called by the dispatch handler.
  push(chunk: Buffer): void {
    if (this.sink !== undefined) this.sink.onData(chunk);
    else if (!this.destroyed) (this.held ??= []).push(chunk);
  }

  end(): void {
    this.state = ENDED;
    this.sink?.onEnd();
  }

  fail(error: Error): void {
    if (this.state.kind !== 'open') return;
    this.state = { kind: 'failed', error };
    this.sink?.onError(error);
  }
}
