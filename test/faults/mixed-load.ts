/**
 * A mixed client load for the fault suite: workers that send chat completions back to back, some
 * streamed (with and without usage asked for), some not, some clients leaving in the middle of a
 * stream. Every request is recorded client-side with the request id the gateway gave it and
 * whether the client received a complete answer: the whole JSON body, or a stream through
 * `data: [DONE]` and its end.
 */

export interface Sent {
  readonly id: string | undefined;
  readonly account: string;
  readonly stream: boolean;
  readonly status: number | undefined;
  /** The client holds the complete answer. */
  readonly complete: boolean;
  /** The client itself hung up in the middle. */
  readonly left: boolean;
}

export interface LoadOptions {
  readonly url: string;
  /** Account name → key; each request picks one at random. */
  readonly keys: Readonly<Record<string, string>>;
  readonly workers: number;
  /** Share of streamed requests (0–1). */
  readonly streamShare: number;
  /** Share of streams the client leaves after the first chunk (0–1). */
  readonly leaveShare: number;
  /** Delay between two requests of a worker (ms). */
  readonly pauseMs?: number;
}

export interface Load {
  readonly sent: Sent[];
  /** Stops sending; resolves once every worker's last request has ended. */
  stop(): Promise<void>;
}

export function startLoad(opts: LoadOptions): Load {
  const sent: Sent[] = [];
  let running = true;
  const names = Object.keys(opts.keys);
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const account = names[Math.floor(Math.random() * names.length)]!;
      const stream = Math.random() < opts.streamShare;
      const leave = stream && Math.random() < opts.leaveShare;
      const usage = Math.random() < 0.5;
      sent.push(await send(opts.url, opts.keys[account]!, account, { stream, leave, usage, n: `${w}-${i}` }));
      if (opts.pauseMs !== undefined) await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
  };
  const done = Promise.all(Array.from({ length: opts.workers }, (_, w) => worker(w)));
  return {
    sent,
    async stop() {
      running = false;
      await done;
    },
  };
}

async function send(
  url: string,
  key: string,
  account: string,
  o: { stream: boolean; leave: boolean; usage: boolean; n: string },
): Promise<Sent> {
  const abort = new AbortController();
  const body = {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: `request ${o.n}` }],
    ...(o.stream && { stream: true }),
    ...(o.stream && o.usage && { stream_options: { include_usage: true } }),
  };
  let id: string | undefined;
  let status: number | undefined;
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: abort.signal,
    });
    id = res.headers.get('x-request-id') ?? undefined;
    status = res.status;
    if (!o.stream || res.status !== 200) {
      const json = (await res.json()) as { choices?: unknown[] };
      const complete = res.status === 200 && Array.isArray(json.choices);
      return { id, account, stream: o.stream, status, complete, left: false };
    }
    const reader = res.body!.getReader();
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString('utf8');
      if (o.leave) {
        abort.abort();
        return { id, account, stream: true, status, complete: false, left: true };
      }
    }
    return { id, account, stream: true, status, complete: /data: ?\[DONE\]/.test(text), left: false };
  } catch {
    // Connection refused or reset (the gateway died), a body cut off, or the client left.
    return { id, account, stream: o.stream, status, complete: false, left: o.leave };
  }
}
