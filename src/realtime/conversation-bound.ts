/**
 * An upper bound of the input tokens the next response of a realtime session can consume: the
 * input half of the reservation that covers each response in flight (session-meter.ts adds the
 * output half and prices both with `worstCaseCost`, at the most expensive token kind).
 *
 * A response reads the whole conversation: instructions and tools, every item so far (text, audio,
 * images) and the earlier responses' output. The bound follows it without a tokenizer:
 *
 * - **start:** the size in bytes of upstream's `session.created` (its instructions and tools are in
 *   it, and a text token is at least one byte);
 * - **text the client adds** (`conversation.item.create`, `session.update`, the `response.create`
 *   itself): the frame's bytes, minus the base64 of audio and images, which are counted below;
 * - **audio:** its duration (decoded bytes ÷ the input format's bytes per second) at
 *   `AUDIO_TOKENS_PER_SECOND`. OpenAI tokenises user audio at one token per 100 ms and assistant
 *   audio at one per 50 ms; the faster rate is taken for all audio, i.e. twice the input rate;
 *   while the format is unknown the smallest format (8 kHz G.711) is assumed, which overcounts;
 * - **images:** `IMAGE_TOKENS_BOUND` each, above both OpenAI image schemes (at most 1,445 tokens
 *   with 512-px tiles, 1,536 patches with 32-px patches);
 * - **each finished response:** its output tokens are added; and when upstream's own count (input
 *   + output, plus what was added since that response started) is higher than the running bound,
 *   it replaces it. The bound never goes down: an out-of-band response (`conversation: "none"`)
 *   reports only its own input, which says nothing about the default conversation.
 *
 * Every response is bounded by `CONTEXT_TOKENS_CAP`, because no realtime model holds more than
 * 128k tokens of context (upstream truncates the conversation to the model's window).
 */

/** Tokens per second of audio assumed for the bound (OpenAI's assistant-audio rate; see above). */
export const AUDIO_TOKENS_PER_SECOND = 20;
/** Tokens assumed per image. */
export const IMAGE_TOKENS_BOUND = 2_500;
/** Largest context window of any realtime model. */
export const CONTEXT_TOKENS_CAP = 128_000;
/** Bytes per second assumed while the input audio format is unknown (G.711, the smallest). */
export const UNKNOWN_FORMAT_BYTES_PER_SECOND = 8_000;

/** Tokens of `base64Chars` characters of base64 audio at `bytesPerSecond`, rounded up. */
export function audioTokens(base64Chars: number, bytesPerSecond: number): number {
  if (base64Chars <= 0) return 0;
  const seconds = (base64Chars * 3) / 4 / bytesPerSecond;
  return Math.ceil(seconds * AUDIO_TOKENS_PER_SECOND);
}

/**
 * Bound of the tokens a client event adds to the conversation: its bytes, except that base64
 * `audio` strings count by duration and `image_url` strings count `IMAGE_TOKENS_BOUND` each.
 */
export function eventTokens(event: unknown, frameBytes: number, bytesPerSecond: number): number {
  const found = { audioChars: 0, imageChars: 0, images: 0 };
  walk(event, found, 0);
  const text = Math.max(0, frameBytes - found.audioChars - found.imageChars);
  return text + audioTokens(found.audioChars, bytesPerSecond) + found.images * IMAGE_TOKENS_BOUND;
}

// JSON nested deeper than this is not a conversation item; stop walking (and recursing) there.
const MAX_DEPTH = 32;

function walk(v: unknown, found: { audioChars: number; imageChars: number; images: number }, depth: number) {
  if (depth > MAX_DEPTH || typeof v !== 'object' || v === null) return;
  if (Array.isArray(v)) {
    for (const x of v) walk(x, found, depth + 1);
    return;
  }
  for (const [key, x] of Object.entries(v)) {
    if (typeof x === 'string') {
      if (key === 'audio') found.audioChars += x.length;
      else if (key === 'image_url') {
        found.imageChars += x.length;
        found.images++;
      }
    } else walk(x, found, depth + 1);
  }
}

export class ConversationBound {
  private tokens = 0;
  /** Everything the client added so far (monotone), to know what came after a response started. */
  private added = 0;
  private readonly addedAtStart = new Map<string, number>();

  /** Upstream described the session (`session.created` / `session.updated`) in `frameBytes`. */
  sessionDescribed(frameBytes: number): void {
    this.tokens = Math.max(this.tokens, frameBytes);
  }

  /** The client added at most `tokens` to the conversation. */
  add(tokens: number): void {
    this.tokens += tokens;
    this.added += tokens;
  }

  responseStarted(id: string): void {
    this.addedAtStart.set(id, this.added);
  }

  /**
   * A response ended. `input` is upstream's count of its input (undefined without usage);
   * `output` its output tokens (or the output bound when upstream reported nothing).
   */
  responseEnded(id: string, input: number | undefined, output: number): void {
    const since = this.added - (this.addedAtStart.get(id) ?? this.added);
    this.addedAtStart.delete(id);
    this.tokens = Math.max(this.tokens + output, (input ?? 0) + output + since);
  }

  /** Input bound of a new response that adds `extra` tokens of its own (its frame, others' output). */
  inputBound(extra: number): number {
    return Math.min(CONTEXT_TOKENS_CAP, this.tokens + Math.max(0, extra));
  }
}
