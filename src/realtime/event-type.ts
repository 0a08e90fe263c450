/**
 * Reads a realtime event's top-level `type` without parsing the frame. Every frame of a session
 * passes through here (audio deltas and appends are tens of kilobytes of base64), and only the few
 * event types the meter needs are then given to JSON.parse.
 *
 * The scan walks the keys of the top-level object and skips their values (strings with escapes,
 * nested objects and arrays), so a `"type"` inside a nested item is never taken for the event's
 * own, and an escaped spelling (`"\u0072esponse.create"`) is decoded the way JSON.parse would.
 * OpenAI and the SDKs write `type` first, so the scan usually stops after a dozen bytes.
 *
 * With a duplicated `type` key the first one wins here while a JSON parser may take the last. That
 * cannot bypass metering: a response upstream starts without a reservation is reserved when its
 * `response.created` arrives (see session-meter.ts).
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;
const TYPE_KEY = Buffer.from('"type"');

/** The frame's top-level `type`, or undefined when the frame is not a JSON object with one. */
export function eventType(frame: Buffer): string | undefined {
  let i = skipSpace(frame, 0);
  if (frame[i] !== OPEN_BRACE) return undefined;
  i++;
  for (;;) {
    i = skipSpace(frame, i);
    if (frame[i] !== QUOTE) return undefined;
    const keyEnd = stringEnd(frame, i);
    if (keyEnd < 0) return undefined;
    const isType = isTypeKey(frame, i, keyEnd);
    i = skipSpace(frame, keyEnd);
    if (frame[i] !== COLON) return undefined;
    i = skipSpace(frame, i + 1);
    if (isType) {
      if (frame[i] !== QUOTE) return undefined;
      const end = stringEnd(frame, i);
      return end < 0 ? undefined : decodeString(frame, i, end);
    }
    i = valueEnd(frame, i);
    if (i < 0) return undefined;
    i = skipSpace(frame, i);
    if (frame[i] !== COMMA) return undefined;
    i++;
  }
}

/** Normalises what ws hands to a 'message' listener into one Buffer. */
export function frameBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function skipSpace(b: Buffer, i: number): number {
  while (i < b.length) {
    const c = b[i];
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
    i++;
  }
  return i;
}

/** Index just past the string that opens at `i` (a quote), or -1 when it never closes. */
function stringEnd(b: Buffer, i: number): number {
  let from = i + 1;
  for (;;) {
    const q = b.indexOf(QUOTE, from);
    if (q < 0) return -1;
    // The quote is escaped when an odd number of backslashes precede it.
    let k = q - 1;
    while (b[k] === BACKSLASH) k--;
    if ((q - 1 - k) % 2 === 0) return q + 1;
    from = q + 1;
  }
}

/** Index just past the JSON value that starts at `i`, or -1 when it is cut off. */
function valueEnd(b: Buffer, i: number): number {
  const c = b[i];
  if (c === QUOTE) return stringEnd(b, i);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 0;
    for (let j = i; j < b.length; j++) {
      const d = b[j];
      if (d === QUOTE) {
        const end = stringEnd(b, j);
        if (end < 0) return -1;
        j = end - 1;
      } else if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
      else if (d === CLOSE_BRACE || d === CLOSE_BRACKET) {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    return -1;
  }
  // A number, true, false or null: runs to the next delimiter.
  let j = i;
  while (j < b.length) {
    const d = b[j];
    if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || d === 0x20 || d === 0x0a || d === 0x0d)
      break;
    if (d === 0x09) break;
    j++;
  }
  return j === i ? -1 : j;
}

function isTypeKey(b: Buffer, start: number, end: number): boolean {
  if (end - start === TYPE_KEY.length && b.compare(TYPE_KEY, 0, TYPE_KEY.length, start, end) === 0)
    return true;
  // Only an escaped spelling can still mean "type"; plain keys of another length cannot.
  return b.indexOf(BACKSLASH, start) < end && decodeString(b, start, end) === 'type';
}

function decodeString(b: Buffer, start: number, end: number): string | undefined {
  const raw = b.toString('utf8', start, end);
  if (!raw.includes('\\')) return raw.slice(1, -1);
  try {
    const value: unknown = JSON.parse(raw);
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}
