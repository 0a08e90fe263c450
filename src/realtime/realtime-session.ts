/**
 * One realtime session once both handshakes are done: frames relayed both ways with back-pressure
 * (frame-pipe.ts), the events that cost money shown to the meter first (session-meter.ts), both
 * peers pinged (keep-alive.ts), idle and maximum durations enforced, and one ending, whatever
 * starts it:
 *
 *   client closes, idle timeout, maximum duration, shutdown, balance exhausted, a peer stops answering
 *     → ask upstream to cancel the responses in flight and wait up to CANCEL_GRACE_MS for their
 *       `response.done` (upstream reports usage for cancelled responses), billed exactly
 *   upstream closes (or nothing came in time)
 *     → bill what is still running from what was delivered, release reservations never started
 *   → close both sides (the peer's close code relayed, or the gateway's own: close-codes.ts)
 *   → write the session's own usage record
 */
import type { Logger } from 'pino';
import type { RawData, WebSocket } from 'ws';
import { CLOSED, OPEN } from './ws-lib.js';
import { clipReason } from './close-codes.js';
import type { EarlyFrames } from './early-frames.js';
import { eventType, frameBuffer } from './event-type.js';
import { FramePipe } from './frame-pipe.js';
import { cancelEvent, errorEvent } from './gateway-events.js';
import { KeepAlive } from './keep-alive.js';
import { farewellFor, type SessionEnd } from './session-end.js';
import { SessionMeter, type SessionMeterDeps, type UpstreamVerdict } from './session-meter.js';

export interface SessionTiming {
  readonly idleTimeoutMs: number;
  readonly maxSessionMs: number;
  readonly pingIntervalMs: number;
  /** How long cancelled responses may take to report their usage when the session ends. */
  readonly cancelGraceMs: number;
  /** How long a closing handshake may take before the socket is cut. */
  readonly closeGraceMs: number;
}

export interface SessionStats {
  /** Bytes queued toward upstream / toward the client right now, and the most ever. */
  readonly queued: number;
  readonly maxQueued: number;
  /** How often each side's socket was paused because the other side was slow. */
  readonly clientPauses: number;
  readonly upstreamPauses: number;
}

export interface SessionOptions {
  readonly client: WebSocket;
  readonly upstream: WebSocket;
  readonly early: EarlyFrames;
  readonly timing: SessionTiming;
  readonly meter: Omit<SessionMeterDeps, 'nextEventId'>;
  /** Logger bound to the session (request id, account, model, key id: never a key). */
  readonly log: Logger;
}

export class RealtimeSession {
  /** Resolves once every ticket of the session is settled. */
  readonly ended: Promise<void>;
  /** Resolves once both sockets are closed. */
  readonly closed: Promise<void>;
  private readonly client: WebSocket;
  private readonly upstream: WebSocket;
  private readonly meter: SessionMeter;
  private readonly toUpstream: FramePipe;
  private readonly toClient: FramePipe;
  private readonly keepAlive: KeepAlive;
  private readonly started = Date.now();
  private lastActivity = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private maxTimer: NodeJS.Timeout | undefined;
  private ending: SessionEnd | undefined;
  private markEnded: () => void = () => undefined;
  private wake: (() => void) | undefined;
  private events = 0;
  /**
   * Frames to the client held behind a `response.done` until its settlement is journaled, in
   * order (`durable`: the frame needs one more journal write before it leaves).
   */
  private toClientHeld: Array<{ data: Buffer; isBinary: boolean; durable: boolean }> | undefined;
  /** Client frames held while one waits for credit (several instances), in arrival order. */
  private held: Array<{ data: Buffer; isBinary: boolean }> | undefined;

  constructor(private readonly opts: SessionOptions) {
    this.client = opts.client;
    this.upstream = opts.upstream;
    this.meter = new SessionMeter({ ...opts.meter, nextEventId: () => this.nextEventId() });
    this.toUpstream = new FramePipe(this.client, this.upstream);
    this.toClient = new FramePipe(this.upstream, this.client);
    this.keepAlive = new KeepAlive(
      [
        { side: 'client', socket: this.client, paused: () => this.toUpstream.sourcePaused },
        { side: 'upstream', socket: this.upstream, paused: () => this.toClient.sourcePaused },
      ],
      opts.timing.pingIntervalMs,
      (side) => void this.end({ kind: 'peer-dead', side }),
    );
    this.ended = new Promise((resolve) => (this.markEnded = resolve));
    this.closed = Promise.all([closedPromise(this.client), closedPromise(this.upstream)]).then(
      () => undefined,
    );
  }

  /** Attaches the relay, replays what upstream sent before, then reads both sides. */
  start(): void {
    const { client, upstream } = this;
    client.on('message', (data: RawData, isBinary: boolean) => this.fromClient(frameBuffer(data), isBinary));
    client.on('close', (code: number, reason: Buffer) => this.clientClosed(code, reason.toString('utf8')));
    client.on('error', (err) => this.opts.log.debug({ err }, 'realtime client socket error'));
    upstream.on('message', (data: RawData, isBinary: boolean) =>
      this.fromUpstream(frameBuffer(data), isBinary),
    );
    upstream.on('close', (code: number, reason: Buffer) =>
      this.upstreamClosed(code, reason.toString('utf8')),
    );
    upstream.on('error', (err) => this.opts.log.debug({ err }, 'realtime upstream socket error'));
    const handover = this.opts.early.release();
    for (const f of handover.frames) this.fromUpstream(f.data, f.isBinary);
    if (handover.closed !== undefined)
      return this.upstreamClosed(handover.closed.code, handover.closed.reason);
    if (!this.toClient.sourcePaused) upstream.resume();
    this.keepAlive.start();
    this.armIdle(this.opts.timing.idleTimeoutMs);
    this.maxTimer = setTimeout(() => void this.end({ kind: 'expired' }), this.opts.timing.maxSessionMs);
    this.maxTimer.unref();
  }

  /** Ends the session because the gateway stops (close code 1001); resolves once settled. */
  shutdown(): Promise<void> {
    void this.end({ kind: 'shutdown' });
    return this.ended;
  }

  stats(): SessionStats {
    return {
      queued: this.toClient.queued + this.toUpstream.queued,
      maxQueued: Math.max(this.toClient.maxQueued, this.toUpstream.maxQueued),
      clientPauses: this.toUpstream.pauses,
      upstreamPauses: this.toClient.pauses,
    };
  }

  private fromClient(data: Buffer, isBinary: boolean, retry = false): void {
    // Once the session ends, only the gateway's own cancels go upstream.
    if (this.ending !== undefined) return;
    // Frames after one waiting for credit keep their order behind it.
    if (this.held !== undefined && !retry) {
      this.held.push({ data, isBinary });
      return;
    }
    this.lastActivity = Date.now();
    this.keepAlive.heard('client');
    const type = isBinary ? undefined : eventType(data);
    if (type !== undefined) {
      const verdict = this.meter.client(type, data, retry);
      switch (verdict.kind) {
        case 'wait':
          this.held = [];
          return void verdict.until
            .catch((err: unknown) => this.opts.log.warn({ err }, 'realtime: could not lease more credit'))
            .then(() => this.release(data));
        case 'forward':
          if (verdict.frame !== undefined) return this.toUpstream.send(verdict.frame, false);
          break;
        case 'reject':
          return this.toClient.send(errorEvent(this.nextEventId(), verdict.error, verdict.eventId), false);
        case 'refuse':
          return void this.end({ kind: 'refused', error: verdict.error, eventId: verdict.eventId });
      }
    }
    this.toUpstream.send(data, isBinary);
  }

  /** Presents the frame that waited for credit again, then the frames held behind it, in order. */
  private release(waited: Buffer): void {
    const behind = this.held ?? [];
    this.held = undefined;
    this.fromClient(waited, false, true);
    for (let i = 0; i < behind.length; i++) {
      const f = behind[i]!;
      // Another frame may wait in turn: what is left stays behind it.
      const waiting = this.heldFrames();
      if (waiting !== undefined) {
        waiting.push(...behind.slice(i));
        return;
      }
      this.fromClient(f.data, f.isBinary);
    }
  }

  private heldFrames(): Array<{ data: Buffer; isBinary: boolean }> | undefined {
    return this.held;
  }

  private fromUpstream(data: Buffer, isBinary: boolean): void {
    this.lastActivity = Date.now();
    this.keepAlive.heard('upstream');
    const type = isBinary ? undefined : eventType(data);
    const verdict: UpstreamVerdict = type === undefined ? { kind: 'relay' } : this.meter.upstream(type, data);
    // A response's end reaches the client once its settlement (just made) is journaled: a client
    // never holds a finished response whose bill a crash could lose.
    this.sendToClient(data, isBinary, type === 'response.done');
    // The refused response is cancelled with the others in flight when the session ends.
    if (verdict.kind === 'refuse') void this.end({ kind: 'refused', error: verdict.error, eventId: null });
    this.wake?.();
  }

  private sendToClient(data: Buffer, isBinary: boolean, durable: boolean): void {
    if (this.toClientHeld !== undefined) {
      this.toClientHeld.push({ data, isBinary, durable });
      return;
    }
    if (!durable) return this.toClient.send(data, isBinary);
    this.toClientHeld = [{ data, isBinary, durable: false }];
    void this.meter.durable().then(() => this.releaseToClient());
  }

  /** Sends the frames held behind a journal write, up to the next one that needs another. */
  private releaseToClient(): void {
    const held = this.toClientHeld ?? [];
    this.toClientHeld = undefined;
    for (let i = 0; i < held.length; i++) {
      const f = held[i]!;
      if (f.durable) {
        // Settled after the write just awaited: one more write before it and what follows.
        this.toClientHeld = held.slice(i).map((h, k) => (k === 0 ? { ...h, durable: false } : h));
        void this.meter.durable().then(() => this.releaseToClient());
        return;
      }
      this.toClient.send(f.data, f.isBinary);
    }
  }

  private clientClosed(code: number, reason: string): void {
    this.meter.markClientGone();
    this.toClient.stop();
    void this.end({ kind: 'client-closed', code, reason });
  }

  private upstreamClosed(code: number, reason: string): void {
    this.toUpstream.stop();
    void this.end({ kind: 'upstream-closed', code, reason });
    this.wake?.();
  }

  private armIdle(delayMs: number): void {
    this.idleTimer = setTimeout(() => {
      const idle = Date.now() - this.lastActivity;
      if (idle >= this.opts.timing.idleTimeoutMs) void this.end({ kind: 'idle' });
      else this.armIdle(this.opts.timing.idleTimeoutMs - idle);
    }, delayMs);
    this.idleTimer.unref();
  }

  private async end(why: SessionEnd): Promise<void> {
    if (this.ending !== undefined) return;
    this.ending = why;
    // What waits for the journal leaves before the farewell.
    while (this.toClientHeld !== undefined) {
      await this.meter.durable();
      this.releaseToClient();
    }
    clearTimeout(this.idleTimer);
    clearTimeout(this.maxTimer);
    this.keepAlive.stop();
    if (why.kind === 'peer-dead') {
      if (why.side === 'client') {
        this.meter.markClientGone();
        this.toClient.stop();
        this.client.terminate();
      } else {
        this.toUpstream.stop();
        this.upstream.terminate();
      }
    }
    const farewell = farewellFor(why);
    try {
      if (farewell.error !== undefined && this.client.readyState === OPEN) {
        this.toClient.send(errorEvent(this.nextEventId(), farewell.error, farewell.errorCause), false);
      }
      if (this.upstream.readyState === OPEN && this.meter.inFlight > 0) {
        const running = this.meter.runningIds();
        for (const id of running) this.toUpstream.send(cancelEvent(this.nextEventId(), id), false);
        // Only reservations whose response has not started: cancel whatever starts.
        if (running.length === 0) this.toUpstream.send(cancelEvent(this.nextEventId()), false);
        await this.quiet(this.opts.timing.cancelGraceMs);
      }
      closeSocket(this.upstream, farewell.upstream);
      closeSocket(this.client, farewell.client);
    } finally {
      // Whatever happened above, every ticket is settled and the sockets go.
      this.meter.settleRemaining(farewell.leftover);
      this.meter.settleSession();
      const cut = setTimeout(() => {
        this.upstream.terminate();
        this.client.terminate();
      }, this.opts.timing.closeGraceMs);
      cut.unref();
      void this.closed.then(() => clearTimeout(cut));
      this.opts.log.info(
        {
          end: why.kind,
          durationMs: Date.now() - this.started,
          responses: this.meter.settledResponses,
          charged: this.meter.charged,
        },
        'realtime session ended',
      );
      this.markEnded();
    }
  }

  /** Resolves when no response is in flight any more, upstream is gone, or `ms` passed. */
  private quiet(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = () => {
        if (this.meter.inFlight === 0 || this.upstream.readyState !== OPEN) done();
      };
    });
  }

  private nextEventId(): string {
    this.events++;
    return `evt_gw_${this.opts.meter.ticket.requestId}_${this.events}`;
  }
}

function closeSocket(socket: WebSocket, how: { code: number; reason: string }): void {
  if (socket.readyState !== OPEN) return;
  socket.close(how.code, clipReason(how.reason));
}

function closedPromise(socket: WebSocket): Promise<void> {
  if (socket.readyState === CLOSED) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}
