/**
 * Upstream error bodies go to the client only after sanitising: OpenAI echoes the first characters
 * and last four of a rejected key ("Incorrect API key provided: sk-abc1*****wxyz"), which would
 * leak fragments of pool keys. Known key-shaped text is replaced, and non-JSON bodies are wrapped
 * in an OpenAI-shaped error.
 */
import { errorBody } from '../errors/catalogue.js';

const KEY_FRAGMENT = /\b(?:sk|pk|rk|sess)-[A-Za-z0-9_*\-.]{2,}/g;

export function sanitizeErrorBody(status: number, body: Buffer): Buffer {
  const text = body.toString('utf8');
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && 'error' in parsed) {
      const err = (parsed as { error: unknown }).error;
      if (typeof err === 'object' && err !== null) {
        const e = err as Record<string, unknown>;
        const message = typeof e['message'] === 'string' ? e['message'] : `Upstream error ${status}`;
        return Buffer.from(
          errorBody(
            cleanMessage(message),
            typeof e['type'] === 'string' ? e['type'] : 'upstream_error',
            typeof e['code'] === 'string' ? e['code'] : null,
            typeof e['param'] === 'string' ? e['param'] : null,
          ),
        );
      }
    }
  } catch {
    // not JSON: fall through to the generic wrapper
  }
  return Buffer.from(
    errorBody(`Upstream error ${status}`, status >= 500 ? 'server_error' : 'upstream_error', null),
  );
}

function cleanMessage(message: string): string {
  return message
    .replace(KEY_FRAGMENT, 'sk-***')
    .replace(/Incorrect API key provided: [^.\s]*/g, 'Incorrect API key provided');
}
