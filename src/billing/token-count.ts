/**
 * Token counting with OpenAI's real BPE encodings (gpt-tokenizer), for two jobs:
 * - estimating a request's prompt before forwarding, to reserve its worst-case cost;
 * - metering a request ourselves when upstream gave no `usage` (client disconnect, broken stream).
 *
 * Upstream `usage` is always authoritative; these counts are estimates (the chat template, tool
 * rendering and image/audio/file inputs are approximated).
 *
 * Hot-path cost: BPE on adversarial text runs at roughly 2 MB/s, so any input whose text exceeds
 * `MAX_TOKENIZE_CHARS` (200k chars, ≈50k tokens) is estimated as UTF-8 bytes / 4 instead of being
 * tokenized; bytes rather than chars keep non-Latin scripts from being badly undercounted.
 */
import { createRequire } from 'node:module';

export type EncodingName = 'o200k_base' | 'cl100k_base';

/** Above this many characters of text, tokens are estimated from the length (see header). */
export const MAX_TOKENIZE_CHARS = 200_000;

// Cookbook (num_tokens_from_messages): every message costs 3 tokens of framing, a `name` one more,
// and every reply is primed with 3 tokens.
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_NAME = 1;
const REPLY_PRIMING_TOKENS = 3;
// Bounds for maxOutputTokens: absurd client values must stay safe integers so that a reservation
// computed from them is huge (and refused), never NaN or zero.
const MAX_OUTPUT_TOKENS_BOUND = 100_000_000;
const MAX_CHOICES = 128;
// JSON nesting deeper than this in a prompt is not real content; stop walking (and recursing).
const MAX_DEPTH = 32;

interface Encoder {
  countTokens(text: string, options?: { disallowedSpecial?: Set<string> }): number;
}

// Special-token text such as "<|endoftext|>" in user content is plain text to OpenAI; by default
// gpt-tokenizer throws on it. An empty set is not mutated by the library, so it can be shared.
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

// Each encoding's rank table costs ~50–110 ms and tens of MB to load, so load it on first use
// (synchronously, through the CommonJS build, keeping the counting API synchronous) and only once.
const requireCjs = createRequire(import.meta.url);
const encoders = new Map<EncodingName, Encoder>();

function encoder(name: EncodingName): Encoder {
  let enc = encoders.get(name);
  if (!enc) {
    enc = requireCjs(`gpt-tokenizer/cjs/encoding/${name}`) as Encoder;
    encoders.set(name, enc);
  }
  return enc;
}

/** Loads both encodings now (call at start-up so the first request does not pay for it). */
export function warmTokenizers(): void {
  encoder('o200k_base');
  encoder('cl100k_base');
}

/** The encoding OpenAI uses for `model`: cl100k for the GPT-4 / GPT-3.5 / embeddings era, else o200k. */
export function encodingForModel(model: string): EncodingName {
  const m = baseModel(model);
  if (m.startsWith('gpt-4o') || m.startsWith('gpt-4.') || m.startsWith('chatgpt-4o')) return 'o200k_base';
  if (
    m.startsWith('gpt-4') ||
    m.startsWith('gpt-3.5') ||
    m.startsWith('gpt-35') ||
    m.startsWith('text-embedding-') ||
    m.startsWith('text-moderation') ||
    m === 'davinci-002' ||
    m === 'babbage-002'
  ) {
    return 'cl100k_base';
  }
  // gpt-4o, gpt-4.1, gpt-4.5, gpt-5*, o-series, omni-moderation, realtime/audio/image models, and
  // whatever comes next: every model since mid-2024 uses o200k.
  return 'o200k_base';
}

/** `ft:gpt-4o-mini-2024-07-18:org::id` → `gpt-4o-mini-2024-07-18`, lower case. */
function baseModel(model: string): string {
  const m = model.trim().toLowerCase();
  return m.startsWith('ft:') ? (m.split(':')[1] ?? '') : m;
}

/** Length-based estimate used above `MAX_TOKENIZE_CHARS`: UTF-8 bytes / 4, rounded up. */
export function estimateTokensFromLength(text: string): number {
  return Math.ceil(Buffer.byteLength(text, 'utf8') / 4);
}

/** Tokens of `text` in `model`'s encoding (length-based estimate for huge texts). */
export function countTextTokens(model: string, text: string): number {
  return exactTextTokens(model, text) ?? estimateTokensFromLength(text);
}

/**
 * Tokens of `text` in `model`'s encoding, or undefined where `countTextTokens` would estimate
 * (text above `MAX_TOKENIZE_CHARS`, a tokenizer failure): for bounds that must not undercount.
 */
export function exactTextTokens(model: string, text: string): number | undefined {
  if (text.length === 0) return 0;
  if (text.length > MAX_TOKENIZE_CHARS) return undefined;
  try {
    return encoder(encodingForModel(model)).countTokens(text, PLAIN_TEXT);
  } catch {
    // Never let metering fail a request: the tokenizer has no documented failure, but be sure.
    return undefined;
  }
}

/**
 * Output tokens a request may produce: `max_completion_tokens` / `max_tokens` /
 * `max_output_tokens`, else `cap`; times `n` (or `best_of`) since every choice is billed.
 */
export function maxOutputTokens(body: unknown, cap: number): number {
  const b = isRecord(body) ? body : {};
  const perChoice =
    positiveInt(b['max_completion_tokens']) ??
    positiveInt(b['max_tokens']) ??
    positiveInt(b['max_output_tokens']) ??
    (Number.isFinite(cap) && cap > 0 ? Math.ceil(cap) : 0);
  const choices = Math.max(positiveInt(b['n']) ?? 1, positiveInt(b['best_of']) ?? 1);
  return Math.min(perChoice, MAX_OUTPUT_TOKENS_BOUND) * Math.min(choices, MAX_CHOICES);
}

/**
 * Estimated prompt tokens of an OpenAI request body, by endpoint:
 * - `/chat/completions`: `messages` (string content or content-part arrays, tool calls, names) with
 *   the cookbook's per-message overhead, plus `tools` / `functions` / `response_format`;
 * - `/responses`: `instructions` + `input` (string or item array) + `tools` + `text`;
 * - `/completions`: `prompt` (string, strings, token array(s)) + `suffix`;
 * - `/embeddings`, `/moderations`, `/audio/speech`: `input`; `/images/*`: `prompt`;
 * - any other path: `messages` as chat if present, else `input` / `prompt`.
 * Images count a fixed per-image estimate by model family and detail, audio parts by their size;
 * unknown shapes count 0 rather than throwing.
 */
export function estimatePromptTokens(path: string, body: unknown): number {
  if (!isRecord(body)) return 0;
  const model = typeof body['model'] === 'string' ? body['model'] : '';
  const acc = new Acc(model);
  const p = (path.split('?')[0] ?? '').replace(/\/+$/, '');

  const kind = endpointKind(p, body);
  if (kind === 'chat') {
    const messages = body['messages'];
    if (Array.isArray(messages)) {
      for (const msg of messages) {
        acc.fixed += TOKENS_PER_MESSAGE;
        if (isRecord(msg) && typeof msg['name'] === 'string') acc.fixed += TOKENS_PER_NAME;
        acc.walk(msg, 0, undefined);
      }
      acc.fixed += REPLY_PRIMING_TOKENS;
    }
    acc.json(body['tools']);
    acc.json(body['functions']);
    acc.json(body['response_format']);
  } else if (kind === 'responses') {
    acc.walk(body['instructions'], 0, undefined);
    const input = body['input'];
    if (Array.isArray(input)) {
      for (const item of input) {
        if (isRecord(item) && (item['type'] === undefined || item['type'] === 'message')) {
          acc.fixed += TOKENS_PER_MESSAGE;
        }
        acc.walk(item, 0, undefined);
      }
      acc.fixed += REPLY_PRIMING_TOKENS;
    } else {
      acc.walk(input, 0, undefined);
    }
    acc.json(body['tools']);
    acc.json(body['text']);
  } else if (kind === 'completions') {
    acc.promptLike(body['prompt']);
    acc.walk(body['suffix'], 0, undefined);
  } else {
    acc.promptLike(body['input'] ?? body['prompt']);
  }
  return acc.total();
}

/**
 * Tokens of the image, audio and file inputs in `value`, estimated as `estimatePromptTokens` does
 * (per image by model and detail, audio and files by size); its text is not counted.
 */
export function mediaInputTokens(model: string, value: unknown): number {
  const acc = new Acc(model);
  acc.walk(value, 0, undefined);
  return acc.fixed;
}

type EndpointKind = 'chat' | 'responses' | 'completions' | 'input';

/** Endpoint family from the path; an unknown path is classified by the body's fields. */
function endpointKind(path: string, body: Record<string, unknown>): EndpointKind {
  if (path.endsWith('/chat/completions')) return 'chat';
  if (path.endsWith('/responses')) return 'responses';
  if (path.endsWith('/completions')) return 'completions';
  // /embeddings, /moderations, /audio/speech (`input`), /images/* (`prompt`), anything else.
  return Array.isArray(body['messages']) ? 'chat' : 'input';
}

// Strings under these keys are identifiers, enums or binary payloads, not prompt text.
const SKIP_KEYS = new Set([
  'type',
  'id',
  'role',
  'status',
  'call_id',
  'tool_call_id',
  'detail',
  'format',
  'file_id',
  'file_url',
  'url',
  'image_url',
  'data',
  'file_data',
  'encrypted_content',
  'signature',
  'mime_type',
]);

// Audio: ~10 tokens per second of input; assume compressed audio at 16 kB/s (128 kbit/s), which
// overestimates for the usual mp3 and underestimates raw wav at most 2x.
const AUDIO_TOKENS_PER_SECOND = 10;
const AUDIO_BYTES_PER_SECOND = 16_000;
// Files (PDF): text plus a page image per page; ~1 token per 20 bytes of PDF is a rough middle.
const FILE_BYTES_PER_TOKEN = 20;

/** Accumulates prompt text (tokenized once at the end) and fixed token counts. */
class Acc {
  private readonly texts: string[] = [];
  private chars = 0;
  fixed = 0;

  constructor(private readonly model: string) {}

  add(text: string): void {
    if (text.length === 0) return;
    this.texts.push(text);
    this.chars += text.length;
  }

  json(v: unknown): void {
    if (v === undefined || v === null) return;
    try {
      const s = JSON.stringify(v);
      if (s !== undefined) this.add(s);
    } catch {
      // Circular or BigInt values cannot come from JSON.parse; ignore anything else odd.
    }
  }

  /** `prompt` / `input`: string, string array, token array or token arrays (counted as given). */
  promptLike(v: unknown): void {
    if (typeof v === 'string') return this.add(v);
    if (!Array.isArray(v)) return this.walk(v, 0, undefined);
    if (v.length > 0 && v.every((x) => typeof x === 'number')) {
      this.fixed += v.length;
      return;
    }
    for (const x of v) {
      if (Array.isArray(x) && x.every((t) => typeof t === 'number')) this.fixed += x.length;
      else this.walk(x, 1, undefined);
    }
  }

  walk(v: unknown, depth: number, key: string | undefined): void {
    if (typeof v === 'string') {
      if (key === undefined || !SKIP_KEYS.has(key)) this.add(v);
      return;
    }
    if (typeof v !== 'object' || v === null || depth > MAX_DEPTH) return;
    if (Array.isArray(v)) {
      for (const x of v) this.walk(x, depth + 1, undefined);
      return;
    }
    const obj = v as Record<string, unknown>;
    const type = obj['type'];
    if (type === 'image_url' || type === 'input_image') {
      const nested = obj['image_url'];
      const detail = isRecord(nested) ? nested['detail'] : obj['detail'];
      this.fixed += imageTokens(this.model, detail === 'low' ? 'low' : 'high');
      return;
    }
    if (type === 'input_audio') {
      const audio = obj['input_audio'];
      const data = isRecord(audio) ? audio['data'] : obj['data'];
      if (typeof data === 'string') {
        this.fixed += Math.ceil(((data.length * 0.75) / AUDIO_BYTES_PER_SECOND) * AUDIO_TOKENS_PER_SECOND);
      }
      return;
    }
    if (type === 'file' || type === 'input_file') {
      const file = isRecord(obj['file']) ? obj['file'] : obj;
      const data = file['file_data'];
      if (typeof data === 'string') this.fixed += Math.ceil((data.length * 0.75) / FILE_BYTES_PER_TOKEN);
      if (typeof file['filename'] === 'string') this.add(file['filename']);
      return;
    }
    for (const k in obj) this.walk(obj[k], depth + 1, k);
  }

  total(): number {
    if (this.texts.length === 0) return this.fixed;
    if (this.chars > MAX_TOKENIZE_CHARS) {
      let tokens = 0;
      for (const t of this.texts) tokens += estimateTokensFromLength(t);
      return this.fixed + tokens;
    }
    // One tokenizer call over the pieces joined by newlines: the join changes a few boundary
    // merges, far below the accuracy of the overhead constants.
    return this.fixed + countTextTokens(this.model, this.texts.join('\n'));
  }
}

/**
 * Tokens of one image input (OpenAI's vision pricing): tile models count base + tiles (a
 * 1024×1024 image at high detail = 4 tiles), patch models count 32-px patches × a multiplier.
 * The real size is unknown without decoding the image; upstream usage corrects it.
 */
function imageTokens(model: string, detail: 'low' | 'high'): number {
  const m = baseModel(model);
  const tiles = (base: number, tile: number): number => (detail === 'low' ? base : base + 4 * tile);
  const patches = (mult: number): number => Math.ceil(1024 * mult);
  if (m.startsWith('gpt-4o-mini')) return tiles(2833, 5667);
  if (m.startsWith('gpt-4.1-mini') || m.startsWith('gpt-5-mini')) return patches(1.62);
  if (m.startsWith('gpt-4.1-nano') || m.startsWith('gpt-5-nano')) return patches(2.46);
  if (m.startsWith('o4-mini')) return patches(1.72);
  if (/^o\d/.test(m)) return tiles(75, 150);
  if (m.startsWith('gpt-5')) return tiles(70, 140);
  return tiles(85, 170);
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
