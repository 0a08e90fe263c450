/**
 * One direction of a realtime session: frames go to `dest` one by one as they came (text stays
 * text, binary stays binary), and back-pressure reaches back to `source`.
 *
 * `ws.send` never refuses a frame; it queues in memory when the receiver is slow. So the pipe
 * counts the bytes handed to `send` whose callback has not fired yet (the callback fires once the
 * frame is written to the kernel), pauses the source socket above `HIGH_WATER_BYTES` and resumes it
 * below `LOW_WATER_BYTES`. A paused `ws` stops reading its TCP socket, so the sending peer's own
 * buffers fill and TCP slows it down: memory per session stays bounded by the high-water mark plus
 * one frame, whatever the two peers do.
 */
import type { WebSocket } from 'ws';
import { OPEN } from './ws-lib.js';

export const HIGH_WATER_BYTES = 1024 * 1024;
export const LOW_WATER_BYTES = 256 * 1024;

export class FramePipe {
  /** Bytes handed to `dest.send` and not yet written out. */
  queued = 0;
  /** Highest `queued` seen, and how often the source was paused (for stats and tests). */
  maxQueued = 0;
  pauses = 0;
  private paused = false;
  private stopped = false;

  constructor(
    private readonly source: WebSocket,
    private readonly dest: WebSocket,
  ) {}

  /** Whether the pipe holds the source paused right now. */
  get sourcePaused(): boolean {
    return this.paused;
  }

  send(data: Buffer | string, isBinary: boolean): void {
    if (this.stopped || this.dest.readyState !== OPEN) return;
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.queued += size;
    if (this.queued > this.maxQueued) this.maxQueued = this.queued;
    this.dest.send(data, { binary: isBinary }, () => this.written(size));
    if (!this.paused && this.queued > HIGH_WATER_BYTES) {
      this.paused = true;
      this.pauses++;
      this.source.pause();
    }
  }

  /**
   * The destination is gone: nothing more is sent, and the source must not stay paused (what it
   * still sends is read and metered, then dropped).
   */
  stop(): void {
    this.stopped = true;
    this.release();
  }

  private written(size: number): void {
    this.queued -= size;
    if (this.paused && this.queued <= LOW_WATER_BYTES) this.release();
  }

  private release(): void {
    if (!this.paused) return;
    this.paused = false;
    this.source.resume();
  }
}
