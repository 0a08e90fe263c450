/**
 * The text of Server-Sent Events as a client sees it: the `data:` payloads of complete events, and
 * the client-visible text of one parsed event (chat, completions or responses API), which the
 * tokenizer counts when a stream ends without usage (sse-usage.ts).
 */

const SP = 0x20;

/** Yields the data payload of every event in `text` (complete events, `\n` or `\r\n` lines). */
export function* dataPayloads(text: string): Generator<string> {
  let data: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === '') {
      if (data.length > 0) yield data.join('\n');
      data = [];
    } else if (line.startsWith('data:')) {
      data.push(line.charCodeAt(5) === SP ? line.slice(6) : line.slice(5));
    }
  }
  if (data.length > 0) yield data.join('\n');
}

/** Appends the client-visible text of one streamed event (chat, completions or responses API). */
export function collectText(obj: unknown, out: string[]): void {
  if (!isRecord(obj)) return;
  const choices = obj['choices'];
  if (Array.isArray(choices)) {
    for (const choice of choices) {
      if (!isRecord(choice)) continue;
      pushString(choice['text'], out); // legacy completions
      const delta = choice['delta'];
      if (!isRecord(delta)) continue;
      pushString(delta['content'], out);
      pushString(delta['refusal'], out);
      pushString(delta['reasoning_content'], out);
      const audio = delta['audio'];
      if (isRecord(audio)) pushString(audio['transcript'], out);
      pushCall(delta['function_call'], out);
      const calls = delta['tool_calls'];
      if (Array.isArray(calls)) for (const call of calls) if (isRecord(call)) pushCall(call['function'], out);
    }
    return;
  }
  // Responses API: `response.output_text.delta`, `response.function_call_arguments.delta`,
  // `response.refusal.delta`, `response.reasoning_summary_text.delta`, ... but not base64 audio.
  const type = obj['type'];
  if (typeof type === 'string' && type.endsWith('.delta') && type !== 'response.audio.delta') {
    pushString(obj['delta'], out);
  }
}

function pushCall(fn: unknown, out: string[]): void {
  if (!isRecord(fn)) return;
  pushString(fn['name'], out);
  pushString(fn['arguments'], out);
}

function pushString(v: unknown, out: string[]): void {
  if (typeof v === 'string' && v.length > 0) out.push(v);
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
