/**
 * The parts of a realtime session's configuration the meter needs, read from both API shapes:
 *
 * | what                     | GA (`session.*`)                 | beta (`OpenAI-Beta: realtime=v1`)     |
 * | ------------------------ | -------------------------------- | ------------------------------------- |
 * | output limit             | `max_output_tokens`              | `max_response_output_tokens`          |
 * | input audio format       | `audio.input.format` `{type,rate}` | `input_audio_format` `pcm16`/`g711_*` |
 * | input transcription      | `audio.input.transcription`      | `input_audio_transcription`           |
 *
 * Every reader is defensive: a field of the wrong type counts as absent, never as zero.
 */

/** A response's output limit: a number of tokens, or `inf` (the model's maximum). */
export type OutputLimit = number | 'inf';

export interface SessionSettings {
  /** Present only when the object names it. */
  readonly model?: string;
  readonly maxOutputTokens?: OutputLimit;
  /** Bytes per second of the input audio format. */
  readonly inputBytesPerSecond?: number;
  /** The transcription model; `null` when transcription is switched off. */
  readonly transcriptionModel?: string | null;
}

/** pcm16 is 24 kHz, 16-bit mono; G.711 (µ-law, A-law) is 8 kHz, 8-bit. */
const PCM16_24K_BYTES_PER_SECOND = 48_000;
const G711_BYTES_PER_SECOND = 8_000;

/** Reads the settings out of a `session` object (of a session event or a `session.update`). */
export function readSessionSettings(session: unknown): SessionSettings {
  if (!isRecord(session)) return {};
  const out: {
    model?: string;
    maxOutputTokens?: OutputLimit;
    inputBytesPerSecond?: number;
    transcriptionModel?: string | null;
  } = {};
  const model = session['model'];
  if (typeof model === 'string' && model !== '') out.model = model;
  const limit =
    outputLimit(session['max_output_tokens']) ?? outputLimit(session['max_response_output_tokens']);
  if (limit !== undefined) out.maxOutputTokens = limit;

  const input = record(record(session['audio'])?.['input']);
  const rate = audioRate(input?.['format']) ?? audioRate(session['input_audio_format']);
  if (rate !== undefined) out.inputBytesPerSecond = rate;

  const transcription =
    input !== undefined && 'transcription' in input
      ? input['transcription']
      : 'input_audio_transcription' in session
        ? session['input_audio_transcription']
        : undefined;
  if (transcription === null) out.transcriptionModel = null;
  else if (isRecord(transcription)) {
    const m = transcription['model'];
    if (typeof m === 'string' && m !== '') out.transcriptionModel = m;
  }
  return out;
}

/** A response's own output limit from the `response` object of a `response.create`. */
export function responseOutputLimit(response: unknown): OutputLimit | undefined {
  if (!isRecord(response)) return undefined;
  return outputLimit(response['max_output_tokens']) ?? outputLimit(response['max_response_output_tokens']);
}

/** Turns a limit into a token count: `inf` (or nothing known) is the gateway's output cap. */
export function outputTokens(limit: OutputLimit | undefined, cap: number): number {
  return limit === undefined || limit === 'inf' ? cap : Math.min(limit, cap);
}

function outputLimit(v: unknown): OutputLimit | undefined {
  if (v === 'inf') return 'inf';
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

function audioRate(format: unknown): number | undefined {
  if (typeof format === 'string') {
    if (format === 'pcm16') return PCM16_24K_BYTES_PER_SECOND;
    if (format === 'g711_ulaw' || format === 'g711_alaw') return G711_BYTES_PER_SECOND;
    return undefined;
  }
  if (!isRecord(format)) return undefined;
  const type = format['type'];
  if (type === 'audio/pcmu' || type === 'audio/pcma') return G711_BYTES_PER_SECOND;
  if (type === 'audio/pcm') {
    const hz = format['rate'];
    return typeof hz === 'number' && Number.isSafeInteger(hz) && hz > 0 ? hz * 2 : PCM16_24K_BYTES_PER_SECOND;
  }
  return undefined;
}

function record(v: unknown): Record<string, unknown> | undefined {
  return isRecord(v) ? v : undefined;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
