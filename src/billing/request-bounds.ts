/**
 * What a request's own body says about its worst-case cost, before upstream answers: an upper
 * bound of its prompt tokens (without tokenizing on the hot path) and the quantities priced per
 * unit (images asked for, characters to speak, seconds of audio uploaded).
 */
import type { ParsedRequest } from '../proxy/parse-request.js';
import type { WorstCaseExtras } from './cost.js';
import { mediaInputTokens } from './token-count.js';

/** Transcription uploads are priced by duration; without one, assume 128 kbit/s audio. */
const AUDIO_BYTES_PER_SECOND = 16_000;

// `"input_` covers input_image / input_audio / input_file parts; `"file_` file_data / file_id.
const NON_TEXT_INPUTS = ['"image_url"', '"input_', '"file_'].map((m) => Buffer.from(m));

/**
 * An upper bound of the prompt's tokens for the reservation, without tokenizing on the hot path:
 * every text token is at least one byte of the JSON body (escapes only make the body longer), so
 * the body length bounds text prompts. Images, audio and files can cost more tokens than their
 * bytes in the body (an image URL), so such bodies add the estimate of their media. About 4× the
 * real count of English: before refusing for money, the meter counts chat prompts exactly
 * (exact-prompt.ts).
 */
export function promptBound(path: string, req: Pick<ParsedRequest, 'body' | 'json'>): number {
  const body = req.body;
  if (body === undefined || req.json === undefined) return 0;
  const bytes = body.length;
  for (const marker of NON_TEXT_INPUTS) {
    if (!body.includes(marker)) continue;
    // Text costs at most its bytes; only images, audio and files can cost more tokens than theirs,
    // and their estimate needs no tokenizer, so no body (adversarial text beside an image marker,
    // on which BPE is quadratic) can make admission slow.
    const model = typeof req.json['model'] === 'string' ? req.json['model'] : '';
    return bytes + mediaInputTokens(model, req.json);
  }
  return bytes;
}

/** Quantities priced per unit that are known from the request itself. */
export function requestExtras(path: string, req: ParsedRequest): WorstCaseExtras {
  if (path.startsWith('/v1/images/')) {
    const n = req.json?.['n'];
    return { images: typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : 1 };
  }
  if (path === '/v1/audio/speech') {
    const input = req.json?.['input'];
    return { characters: typeof input === 'string' ? input.length : 0 };
  }
  if (path.startsWith('/v1/audio/') && req.multipart && req.body !== undefined) {
    return { audioSeconds: req.body.length / AUDIO_BYTES_PER_SECOND };
  }
  return {};
}
