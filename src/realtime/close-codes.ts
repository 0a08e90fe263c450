/**
 * WebSocket close codes of realtime sessions: the codes the gateway itself closes with, and how a
 * close received from one peer is passed on to the other.
 */

/** Codes the gateway sends. */
export const CLOSE_CODE = {
  /** The session ended normally, or by an idle timeout or its maximum duration. */
  normal: 1000,
  /** The gateway is shutting down. */
  goingAway: 1001,
  /** The account may not continue (balance, HardLimit, account disabled). */
  policy: 1008,
  /** The other peer was lost or the gateway failed. */
  internal: 1011,
} as const;

/** RFC 6455 limits a close reason to 123 bytes of UTF-8. */
const MAX_REASON_BYTES = 123;

/**
 * Whether `code` may be put in a close frame: 1000–1014 except the reserved 1004 and the
 * "never on the wire" 1005 (no code) and 1006 (abnormal), or an application code 3000–4999.
 */
export function isSendableCode(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006;
}

/**
 * The close to send to one peer after the other closed with `code` and `reason`: the same when it
 * may be sent. A close frame without a code (1005) was an orderly close, so 1000; a connection lost
 * without a close frame (1006) or a failed TLS handshake (1015) is relayed as 1011.
 */
export function relayedClose(code: number, reason: string): { code: number; reason: string } {
  if (isSendableCode(code)) return { code, reason: clipReason(reason) };
  if (code === 1005) return { code: CLOSE_CODE.normal, reason: clipReason(reason) };
  return { code: CLOSE_CODE.internal, reason: clipReason(reason === '' ? 'connection lost' : reason) };
}

/** Cuts a reason to what a close frame can carry without splitting a UTF-8 character. */
export function clipReason(reason: string): string {
  if (Buffer.byteLength(reason) <= MAX_REASON_BYTES) return reason;
  let out = '';
  let bytes = 0;
  for (const ch of reason) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > MAX_REASON_BYTES) break;
    out += ch;
    bytes += n;
  }
  return out;
}
