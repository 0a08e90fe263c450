/**
 * Answers an upgrade request that will not become a WebSocket with a plain HTTP response and
 * closes the socket: a refused session never gets a 101. The body is OpenAI's error JSON, built
 * by the one serializer of the error catalogue (or an upstream error body, already sanitised).
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody, type GatewayError } from '../errors/catalogue.js';

const ANSWER_TIMEOUT_MS = 5_000;

export function refuseUpgrade(
  socket: Duplex,
  err: GatewayError,
  headers: Readonly<Record<string, string>> = {},
): void {
  writeHttpAnswer(socket, err.status, errorBody(err.message, err.type, err.code, err.param), {
    ...headers,
    ...err.headers,
  });
}

/** Writes `status` with a JSON `body` and closes the connection. */
export function writeHttpAnswer(
  socket: Duplex,
  status: number,
  body: string | Buffer,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (!socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  const payload = typeof body === 'string' ? Buffer.from(body) : body;
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  head += `content-type: application/json; charset=utf-8\r\ncontent-length: ${payload.length}\r\nconnection: close\r\n\r\n`;
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), payload]), () => socket.destroy());
  // A client that never reads the answer must not hold the socket open.
  setTimeout(() => socket.destroy(), ANSWER_TIMEOUT_MS).unref();
}
