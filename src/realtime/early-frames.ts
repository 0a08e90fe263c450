/**
 * Holds an upstream socket between its handshake and the moment the session takes it over (the
 * client's upgrade is completed in between). Upstream speaks first (`session.created`), and a
 * 'message' event without a listener would be lost, so the frames are kept in order here, together
 * with an early close or error, and replayed by the session.
 */
import type { RawData, WebSocket } from 'ws';
import { frameBuffer } from './event-type.js';

export interface EarlyFrame {
  readonly data: Buffer;
  readonly isBinary: boolean;
}

export interface Handover {
  readonly frames: readonly EarlyFrame[];
  /** Set when upstream closed before the session started. */
  readonly closed: { readonly code: number; readonly reason: string } | undefined;
}

export class EarlyFrames {
  private readonly frames: EarlyFrame[] = [];
  private closed: { code: number; reason: string } | undefined;
  private readonly onMessage = (data: RawData, isBinary: boolean): void => {
    this.frames.push({ data: frameBuffer(data), isBinary });
  };
  private readonly onClose = (code: number, reason: Buffer): void => {
    this.closed = { code, reason: reason.toString('utf8') };
  };
  // Errors are followed by 'close'; without a listener an 'error' would crash the process.
  private readonly onError = (): void => undefined;

  constructor(private readonly socket: WebSocket) {
    socket.on('message', this.onMessage);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
  }

  /** Stops collecting and hands over what arrived; the caller attaches its own listeners first. */
  release(): Handover {
    this.socket.off('message', this.onMessage);
    this.socket.off('close', this.onClose);
    this.socket.off('error', this.onError);
    return { frames: this.frames, closed: this.closed };
  }
}
