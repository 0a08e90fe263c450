/**
 * Structured JSON logs (pino) that cannot leak a key: Authorization headers are redacted by path,
 * and every string that looks like an API key is masked before a line is written, whatever field
 * it hides in (error messages from upstream echo key fragments).
 */
import pino, { type Logger } from 'pino';

const KEY_LIKE = /\b(sk-[A-Za-z0-9_-]{4})[A-Za-z0-9_*-]{6,}/g;

/** Masks anything shaped like an API key: keeps the first 7 characters only. */
export function scrubKeys(text: string): string {
  return text.replace(KEY_LIKE, '$1***');
}

function scrub(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return scrubKeys(value);
  if (depth > 6 || typeof value !== 'object' || value === null) return value;
  // The log formatter runs before pino's serializers, and an error's message and stack are not
  // enumerable: copied field by field, every logged error was `{}`. Serialized here (type,
  // message, stack, cause and its own fields such as `code`), then masked like the rest.
  if (value instanceof Error) return scrub(pino.stdSerializers.err(value), depth + 1);
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrub(v, depth + 1);
  return out;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'proxyxai' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [
        'authorization',
        'headers.authorization',
        'req.headers.authorization',
        'secret',
        'SecretKey',
        'key.secret',
      ],
      censor: '[redacted]',
    },
    // Errors are serialized by `scrub` in the log formatter, which pino runs first; its own `err`
    // serializer would take the result for an error again and name its type "Object".
    serializers: { err: (value: unknown) => value },
    formatters: {
      log: (obj) => scrub(obj, 0) as Record<string, unknown>,
    },
    hooks: {
      logMethod(args, method) {
        method.apply(
          this,
          args.map((a) => (typeof a === 'string' ? scrubKeys(a) : a)) as Parameters<typeof method>,
        );
      },
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
