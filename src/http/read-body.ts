/**
 * Reads a request body into one Buffer (kept whole so a retry can resend it byte-identical), with
 * the size limit enforced while the body streams in. On overflow it stops storing, answers 413 and
 * closes "lingering": the rest of the upload is read and discarded for a moment so the client sees
 * the 413 instead of a connection reset.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError, sendError } from '../errors/catalogue.js';

export type BodyResult = { ok: true; body: Buffer } | { ok: false; error: GatewayError; answered: boolean };

const LINGER_MS = 2_000;

export function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<BodyResult> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    rejectTooLarge(req, res, limit);
    return Promise.resolve({ ok: false, error: tooLarge(limit), answered: true });
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const onData = (chunk: Buffer): void => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        done = true;
        cleanup();
        chunks.length = 0;
        rejectTooLarge(req, res, limit);
        resolve({ ok: false, error: tooLarge(limit), answered: true });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      if (done) return;
      done = true;
      cleanup();
      resolve({ ok: true, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
    };
    const onError = (): void => {
      if (done) return;
      done = true;
      cleanup();
      resolve({
        ok: false,
        error: new GatewayError('invalid_body', 'The request body could not be read.'),
        answered: false,
      });
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onError);
  });
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError('body_too_large', `The request body exceeds the limit of ${formatBytes(limit)}.`);
}

function rejectTooLarge(req: IncomingMessage, res: ServerResponse, limit: number): void {
  const socket = req.socket;
  // Keep reading (and dropping) whatever the client still sends, so closing does not send a TCP
  // reset that would destroy our 413 in the client's receive buffer before it is read.
  req.on('data', () => undefined);
  req.resume();
  sendError(res, tooLarge(limit), { connection: 'close' });
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

function formatBytes(n: number): string {
  return n >= 1024 * 1024
    ? `${(n / (1024 * 1024)).toFixed(n % (1024 * 1024) === 0 ? 0 : 2)} MB`
    : `${n} bytes`;
}
