/**
 * The upstream HTTP client: one undici Pool (keep-alive connections) to OPENAI_API_BASE. It sends
 * one attempt and reports what came back; deciding about retries is the caller's job.
 */
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';

export interface UpstreamRequest {
  readonly method: string;
  /** Path and query, e.g. `/v1/chat/completions?x=1` (base path is prepended here). */
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer | undefined;
  readonly signal: AbortSignal;
  /** Time allowed until response headers arrive for this attempt. */
  readonly headersTimeoutMs: number;
}

export type AttemptResult =
  | { readonly kind: 'response'; readonly response: Dispatcher.ResponseData }
  | {
      readonly kind: 'network-error';
      readonly reason: string;
      readonly timeout: boolean;
      readonly aborted: boolean;
    };

export class UpstreamClient {
  private readonly pool: Pool;

  constructor(
    origin: string,
    private readonly basePath: string,
    opts: { connectTimeoutMs: number; idleTimeoutMs: number; connections: number },
  ) {
    this.pool = new Pool(origin, {
      // Unbounded by default: every concurrent stream holds its own HTTP/1.1 connection, and a cap
      // would queue streams behind each other.
      connections: opts.connections === 0 ? null : opts.connections,
      connect: { timeout: opts.connectTimeoutMs },
      bodyTimeout: opts.idleTimeoutMs,
      keepAliveTimeout: 30_000,
      pipelining: 1,
    });
  }

  async send(req: UpstreamRequest): Promise<AttemptResult> {
    try {
      const response = await this.pool.request({
        method: req.method as Dispatcher.HttpMethod,
        path: this.basePath + req.path,
        headers: req.headers,
        body: req.body ?? null,
        signal: req.signal,
        headersTimeout: req.headersTimeoutMs,
      });
      return { kind: 'response', response };
    } catch (err: unknown) {
      const aborted = req.signal.aborted;
      const timeout =
        err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.ConnectTimeoutError;
      const reason =
        err instanceof Error
          ? `${err.name}: ${(err as { code?: string }).code ?? err.message}`
          : 'unknown error';
      return { kind: 'network-error', reason, timeout, aborted };
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}
