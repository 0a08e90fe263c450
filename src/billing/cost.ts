/**
 * Turns metered usage into money: the exact cost of a finished request (`computeCost`), the
 * worst-case cost reserved before forwarding (`worstCaseCost`), and a defensive parser of the
 * `usage` objects OpenAI returns (`usageFromOpenAI`). All arithmetic on money goes through
 * money.ts `usageCost`; this module only builds (units, unit price) lines.
 */
import { usageCost, type Micros, type RateMicros } from './money.js';
import type { ImagePrice, ModelPrice } from './price-table.js';

/**
 * Metered usage of one request. Token counts follow OpenAI's convention: `cachedTokens` and
 * `audioPromptTokens` are *part of* `promptTokens`, `audioCompletionTokens` part of
 * `completionTokens` (reasoning tokens are part of `completionTokens` too and billed as output).
 */
export interface Usage {
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  audioPromptTokens?: number;
  /** Image input tokens (realtime), part of `promptTokens`. */
  imagePromptTokens?: number;
  /** Cached audio input tokens (realtime), part of both `cachedTokens` and `audioPromptTokens`. */
  cachedAudioTokens?: number;
  audioCompletionTokens?: number;
  /** Reasoning tokens, part of `completionTokens`: shown in the request log, never billed apart. */
  reasoningTokens?: number;
  /** Generated images, priced by `imageQuality` / `imageSize` when the model has variants. */
  images?: number;
  imageSize?: string;
  imageQuality?: string;
  /** Input audio duration (transcription), may be fractional. */
  audioSeconds?: number;
  /** Input characters (text to speech). */
  characters?: number;
}

/** Non-token quantities known before forwarding (image count, audio length, speech input). */
export interface WorstCaseExtras {
  images?: number;
  audioSeconds?: number;
  characters?: number;
}

interface Line {
  units: number;
  microsPerMillion: number;
}

// Images and minutes are priced per unit, but usageCost takes prices per 1M units: counting in
// millionths of an image / minute keeps money multiplication inside money.ts and stays exact.
const MILLIONTHS = 1_000_000;
// Upper bound for worst-case quantities (1e12 tokens is far beyond any balance at any price).
const MAX_WORST_CASE_UNITS = 1e12;

/**
 * Exact cost of `usage` at `price` × account `rates`, rounded up once to the micro-dollar.
 * Every dimension present in `usage` is billed; `usageFromOpenAI` never reports tokens and a
 * duration together, so transcription models priced both ways are not billed twice.
 */
export function computeCost(price: ModelPrice, usage: Usage, rates: RateMicros): Micros {
  const lines: Line[] = [];
  const prompt = count(usage.promptTokens);
  const audioIn = Math.min(count(usage.audioPromptTokens), prompt);
  const imageIn = Math.min(count(usage.imagePromptTokens), prompt - audioIn);
  // Cached audio is part of the audio input; the other cached tokens are text. Clamp garbage
  // (cached > prompt) instead of billing negative uncached input.
  const cachedAudio = Math.min(count(usage.cachedAudioTokens), audioIn, count(usage.cachedTokens));
  const cached = Math.min(count(usage.cachedTokens) - cachedAudio, prompt - audioIn - imageIn);
  const textIn = prompt - audioIn - imageIn - cached;
  const completion = count(usage.completionTokens);
  const audioOut = Math.min(count(usage.audioCompletionTokens), completion);
  const cachedPrice = price.cachedInputMicrosPerM ?? price.inputMicrosPerM;

  addLine(lines, textIn, price.inputMicrosPerM);
  addLine(lines, imageIn, price.imageInputMicrosPerM ?? price.inputMicrosPerM);
  addLine(lines, cached, cachedPrice);
  addLine(lines, audioIn - cachedAudio, price.audioInputMicrosPerM ?? price.inputMicrosPerM);
  // OpenAI prices cached audio like cached text for every realtime model.
  addLine(lines, cachedAudio, cachedPrice);
  addLine(lines, completion - audioOut, price.outputMicrosPerM);
  addLine(lines, audioOut, price.audioOutputMicrosPerM ?? price.outputMicrosPerM);
  addExtras(lines, price, usage, imageMicros(price.perImage, usage.imageQuality, usage.imageSize));
  return usageCost(lines, rates);
}

/**
 * Upper bound of what a request can cost, reserved against the balance before forwarding.
 * Every token is assumed to be the most expensive kind (audio when the model has audio prices)
 * and every image the most expensive variant: the reservation is released at settlement, so
 * over-reserving only costs headroom, while under-reserving could let concurrency overspend.
 */
export function worstCaseCost(
  price: ModelPrice,
  promptEstimate: number,
  maxOutputTokens: number,
  rates: RateMicros,
  extras: WorstCaseExtras = {},
): Micros {
  const lines: Line[] = [
    {
      units: ceilCount(promptEstimate),
      microsPerMillion: Math.max(
        price.inputMicrosPerM,
        price.audioInputMicrosPerM ?? 0,
        price.imageInputMicrosPerM ?? 0,
      ),
    },
    {
      units: ceilCount(maxOutputTokens),
      microsPerMillion: Math.max(price.outputMicrosPerM, price.audioOutputMicrosPerM ?? 0),
    },
  ];
  const worst: WorstCaseExtras = {
    ...(extras.images !== undefined && { images: ceilCount(extras.images) }),
    ...(extras.audioSeconds !== undefined && { audioSeconds: nonNegative(extras.audioSeconds) }),
    ...(extras.characters !== undefined && { characters: ceilCount(extras.characters) }),
  };
  addExtras(lines, price, worst, price.perImage?.maxMicros);
  // Saturate: an absurd request must still produce a comparable (safe integer) amount.
  return Math.min(usageCost(lines, rates), Number.MAX_SAFE_INTEGER);
}

/**
 * A line only when it bills something (usageCost skips the others anyway): a chat answer has two
 * of the seven kinds, and this runs on every settlement.
 */
function addLine(lines: Line[], units: number, microsPerMillion: number): void {
  if (units > 0) lines.push({ units, microsPerMillion });
}

function addExtras(lines: Line[], price: ModelPrice, q: WorstCaseExtras, perImage: Micros | undefined): void {
  // Clamped so that counting in millionths stays a safe integer.
  const images = Math.min(count(q.images), 1_000_000_000);
  if (images > 0 && perImage !== undefined)
    lines.push({ units: images * MILLIONTHS, microsPerMillion: perImage });
  const seconds = nonNegative(q.audioSeconds);
  if (seconds > 0 && price.perMinuteMicros !== undefined) {
    // Millionths of a minute, rounded up so a fraction of a second is never free.
    lines.push({ units: Math.ceil((seconds * MILLIONTHS) / 60), microsPerMillion: price.perMinuteMicros });
  }
  const chars = count(q.characters);
  if (chars > 0 && price.perMillionCharsMicros !== undefined) {
    lines.push({ units: chars, microsPerMillion: price.perMillionCharsMicros });
  }
}

/** Per-image price for a request: `quality:size`, then `quality`, then `size`, then the default. */
export function imageMicros(p: ImagePrice | undefined, quality?: string, size?: string): Micros | undefined {
  if (p === undefined) return undefined;
  if (p.variants.size === 0) return p.defaultMicros;
  const q = quality?.toLowerCase();
  const s = size?.toLowerCase();
  return (
    (q !== undefined && s !== undefined ? p.variants.get(`${q}:${s}`) : undefined) ??
    (q !== undefined ? p.variants.get(q) : undefined) ??
    (s !== undefined ? p.variants.get(s) : undefined) ??
    p.defaultMicros
  );
}

/** A non-negative safe integer count, or 0 (garbage never produces a negative or NaN bill). */
function count(v: number | undefined): number {
  return v !== undefined && Number.isSafeInteger(v) && v > 0 ? v : 0;
}

/**
 * For upper bounds: rounds up and saturates instead of discarding, so that an absurd estimate
 * reserves a huge amount (and is refused) rather than nothing.
 */
function ceilCount(v: number): number {
  if (Number.isNaN(v) || v <= 0) return 0;
  return Math.min(Math.ceil(v), MAX_WORST_CASE_UNITS);
}

function nonNegative(v: number | undefined): number {
  return v !== undefined && Number.isFinite(v) && v > 0 ? v : 0;
}

/**
 * Reads an OpenAI `usage` object into `Usage`:
 * - chat/completions: `prompt_tokens`, `completion_tokens`, `prompt_tokens_details.{cached,audio}_tokens`,
 *   `completion_tokens_details.audio_tokens`;
 * - responses API and gpt-image / gpt-4o-transcribe: `input_tokens`, `output_tokens`,
 *   `input_tokens_details.cached_tokens` (transcription spells it `input_token_details`);
 * - embeddings: `prompt_tokens` only (completion 0);
 * - whisper: `{ "type": "duration", "seconds": n }`;
 * - realtime `response.done`: `input_tokens`, `output_tokens`, `input_token_details.{text,audio,image,
 *   cached}_tokens` with `cached_tokens_details.audio_tokens`, `output_token_details.audio_tokens`.
 * Fields that are not non-negative integers (strings, floats, negatives) are ignored. Returns
 * `undefined` when no usable count is present, so the caller falls back to counting itself.
 */
export function usageFromOpenAI(obj: unknown): Usage | undefined {
  if (!isRecord(obj)) return undefined;
  if (obj['type'] === 'duration') {
    const seconds = obj['seconds'];
    if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return undefined;
    return { promptTokens: 0, cachedTokens: 0, completionTokens: 0, audioSeconds: seconds };
  }
  const prompt = int(obj['prompt_tokens']) ?? int(obj['input_tokens']);
  const completion = int(obj['completion_tokens']) ?? int(obj['output_tokens']);
  if (prompt === undefined && completion === undefined) return undefined;
  const inDetails =
    record(obj['prompt_tokens_details']) ??
    record(obj['input_tokens_details']) ??
    record(obj['input_token_details']);
  const outDetails =
    record(obj['completion_tokens_details']) ??
    record(obj['output_tokens_details']) ??
    record(obj['output_token_details']);
  const usage: Usage = {
    promptTokens: prompt ?? 0,
    cachedTokens: int(inDetails?.['cached_tokens']) ?? 0,
    completionTokens: completion ?? 0,
  };
  const audioIn = int(inDetails?.['audio_tokens']);
  if (audioIn !== undefined && audioIn > 0) usage.audioPromptTokens = audioIn;
  const imageIn = int(inDetails?.['image_tokens']);
  if (imageIn !== undefined && imageIn > 0) usage.imagePromptTokens = imageIn;
  // Realtime: `input_token_details.cached_tokens_details.audio_tokens`.
  const cachedAudio = int(record(inDetails?.['cached_tokens_details'])?.['audio_tokens']);
  if (cachedAudio !== undefined && cachedAudio > 0) usage.cachedAudioTokens = cachedAudio;
  const audioOut = int(outDetails?.['audio_tokens']);
  if (audioOut !== undefined && audioOut > 0) usage.audioCompletionTokens = audioOut;
  const reasoning = int(outDetails?.['reasoning_tokens']);
  if (reasoning !== undefined && reasoning > 0) usage.reasoningTokens = reasoning;
  return usage;
}

function int(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

function record(v: unknown): Record<string, unknown> | undefined {
  return isRecord(v) ? v : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Adds `b` into `a` (every dimension), e.g. to total a batch's usage per model before pricing. */
export function addUsage(a: Usage, b: Usage): void {
  a.promptTokens += count(b.promptTokens);
  a.cachedTokens += count(b.cachedTokens);
  a.completionTokens += count(b.completionTokens);
  const sum = (x: number | undefined, y: number | undefined): number | undefined =>
    x === undefined && y === undefined ? undefined : count(x) + count(y);
  const audioIn = sum(a.audioPromptTokens, b.audioPromptTokens);
  if (audioIn !== undefined) a.audioPromptTokens = audioIn;
  const audioOut = sum(a.audioCompletionTokens, b.audioCompletionTokens);
  if (audioOut !== undefined) a.audioCompletionTokens = audioOut;
  const image = sum(a.imagePromptTokens, b.imagePromptTokens);
  if (image !== undefined) a.imagePromptTokens = image;
  const reasoning = sum(a.reasoningTokens, b.reasoningTokens);
  if (reasoning !== undefined) a.reasoningTokens = reasoning;
  const cachedAudio = sum(a.cachedAudioTokens, b.cachedAudioTokens);
  if (cachedAudio !== undefined) a.cachedAudioTokens = cachedAudio;
}
