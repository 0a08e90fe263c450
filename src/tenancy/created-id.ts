/**
 * Finds the id of the object an answer created: the first `"id": "<prefix>…"` member in the
 * bytes (top-level ids come first in OpenAI's JSON; in a stream, `response.created` or the first
 * chunk carries it). The nested file of a completed upload is found the same way, by its prefix.
 * Works on a whole body or on a stream fed chunk by chunk (a small tail is carried over so an id
 * split between two chunks is still found).
 */
const ID_KEY = Buffer.from('"id"');
/** Longest id we accept; OpenAI ids are well under 100 characters. */
const MAX_ID = 200;
const CARRY = MAX_ID + 32;

export function findCreatedId(body: Buffer, prefix: string): string | undefined {
  for (let at = body.indexOf(ID_KEY); at >= 0; at = body.indexOf(ID_KEY, at + 4)) {
    const id = idAt(body, at + 4);
    if (id !== undefined && id.startsWith(prefix)) return id;
  }
  return undefined;
}

/** The string value after `"id"`: optional spaces, a colon, optional spaces, a quoted string. */
function idAt(body: Buffer, from: number): string | undefined {
  let i = from;
  while (i < body.length && isSpace(body[i] as number)) i++;
  if (body[i] !== 0x3a) return undefined;
  i++;
  while (i < body.length && isSpace(body[i] as number)) i++;
  if (body[i] !== 0x22) return undefined;
  const start = i + 1;
  const end = body.indexOf(0x22, start);
  if (end < 0 || end - start > MAX_ID) return undefined;
  const id = body.toString('latin1', start, end);
  return /^[A-Za-z0-9_:.-]+$/.test(id) ? id : undefined;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Feeds a streamed answer chunk by chunk until the created id is found; `onFound` (optional) is
 * called once, with the id, from the `push` that found it.
 */
export class CreatedIdScanner {
  private carry: Buffer | undefined;
  private found: string | undefined;

  constructor(
    private readonly prefix: string,
    private readonly onFound?: ((id: string) => void) | undefined,
  ) {}

  get id(): string | undefined {
    return this.found;
  }

  push(chunk: Buffer): void {
    if (this.found !== undefined) return;
    const data = this.carry === undefined ? chunk : Buffer.concat([this.carry, chunk]);
    this.found = findCreatedId(data, this.prefix);
    this.carry = data.length > CARRY ? Buffer.from(data.subarray(data.length - CARRY)) : data;
    if (this.found !== undefined) this.onFound?.(this.found);
  }
}
