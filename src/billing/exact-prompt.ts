/**
 * The exact prompt bound the meter counts before it refuses a request for money (Meter
 * `recount`). The cheap bound of request-bounds.ts takes every byte of the body for a token,
 * about 4× the real count of English text, so an account near the end of its credit would be
 * refused requests it can pay for; this one tokenizes the messages' text with the model's
 * encoding instead.
 *
 * It stays an upper bound of what upstream bills as prompt tokens. Upstream tokenizes each
 * message's text between the chat template's special tokens, so nothing merges across messages,
 * and here every byte of the body that is not that text still counts as one token: keys, roles,
 * names, tool calls, tool schemas, the quotes and braces around each text. Those are at least
 * the 28 bytes of `{"role":"user","content":""}` per message, against the template's 3 tokens
 * per message (+1 for a name, +3 priming the reply, OpenAI cookbook), and at least the 25 bytes
 * of `{"type":"text","text":""}` per text part, against the token or two its join with the next
 * part may change. Image, audio and file parts add the estimate the cheap bound gives them.
 *
 * CPU: BPE runs at ~25 MB/s on English but is quadratic in long runs without whitespace (one
 * letter or symbol repeated, CJK), and a refused request costs its client nothing; so only bodies
 * up to `EXACT_MAX_BODY_BYTES` are counted, at most `MAX_COUNTED_CHARS` of their text, never a text
 * with a run of 65 non-space characters (those keep their bytes), and the meter counts at most a
 * few prompts per admission.
 * Only chat completions are counted; other endpoints keep the cheap bound.
 */
import type { ParsedRequest } from '../proxy/parse-request.js';
import { exactTextTokens, mediaInputTokens } from './token-count.js';

/** An upper bound of a request's prompt tokens, or undefined when it is not counted. */
export type PromptCounter = (path: string, req: Pick<ParsedRequest, 'body' | 'json'>) => number | undefined;

/** Bodies above this are not counted (the cheap bound stands). */
export const EXACT_MAX_BODY_BYTES = 64 * 1024;

/**
 * Characters of text one count tokenizes at most; texts past it keep their bytes. 24 Ki of English
 * take ≈ 1 ms, of the worst text still counted (runs of 64 symbols, CJK) ≈ 2 ms.
 */
const MAX_COUNTED_CHARS = 24 * 1024;

/**
 * BPE is quadratic in the length of a run the pre-tokenizer keeps whole: 16 Ki of one letter or
 * of symbols without a space took 170–220 ms. A text with a run this long keeps its bytes.
 */
const LONG_RUN = /\S{65}/;

/**
 * An upper bound of the prompt tokens of a chat completion request (see the header); undefined
 * for other requests and bodies above `maxBodyBytes`. The meter's default `PromptCounter`.
 */
export function exactPromptBound(
  path: string,
  req: Pick<ParsedRequest, 'body' | 'json'>,
  maxBodyBytes = EXACT_MAX_BODY_BYTES,
): number | undefined {
  const { body, json } = req;
  if (body === undefined || json === undefined || body.length > maxBodyBytes) return undefined;
  if (!isChatPath(path)) return undefined;
  const messages = json['messages'];
  if (!Array.isArray(messages)) return undefined;
  const model = typeof json['model'] === 'string' ? json['model'] : '';
  // Start from the cheap bound (one token per byte) and trade each text's bytes for its tokens.
  let bound = body.length + mediaInputTokens(model, messages);
  let budget = MAX_COUNTED_CHARS;
  const trade = (text: string): boolean => {
    // Past the budget, or with a run BPE is slow on, the text keeps its bytes (still a bound).
    if (text.length > budget || LONG_RUN.test(text)) return true;
    budget -= text.length;
    const tokens = exactTextTokens(model, text);
    if (tokens === undefined) return false;
    bound += tokens - leastBytes(text);
    return true;
  };
  for (const message of messages) {
    if (!isRecord(message)) continue;
    const content = message['content'];
    if (typeof content === 'string') {
      if (!trade(content)) return undefined;
    } else if (Array.isArray(content)) {
      for (const part of content) {
        if (isRecord(part) && part['type'] === 'text' && typeof part['text'] === 'string') {
          if (!trade(part['text'])) return undefined;
        }
      }
    }
  }
  return bound;
}

/**
 * The fewest bytes `text` can take in the body it was parsed from: its UTF-8 length, as JSON
 * escapes only add bytes; but a U+FFFD may stand for one invalid byte, so such a text counts one
 * byte per UTF-16 unit (every unit came from at least one byte).
 */
function leastBytes(text: string): number {
  return text.includes('\uFFFD') ? text.length : Buffer.byteLength(text, 'utf8');
}

function isChatPath(path: string): boolean {
  return (path.split('?')[0] ?? '').replace(/\/+$/, '').endsWith('/chat/completions');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
