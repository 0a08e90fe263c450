/**
 * The practical floor for a Node proxy, used as the benchmark's reference: a plain node:http
 * server and a keep-alive http.Agent that swap the Authorization header and pipe both bodies
 * through (`req.pipe(upstreamReq)`, `upstreamRes.pipe(res)`). No auth, no parsing, no metering.
 *
 * Runs as its own process (only node: imports, so the bench can transpile it to plain JS).
 * Env: PORT (required), UPSTREAM (e.g. http://127.0.0.1:8080), UPSTREAM_KEY.
 */
import { Agent, createServer, request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { constants, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

const PORT = Number(process.env['PORT'] ?? '0');
const upstream = new URL(process.env['UPSTREAM'] ?? 'http://127.0.0.1:8080');
const AUTH = `Bearer ${process.env['UPSTREAM_KEY'] ?? 'sk-reference'}`;
const agent = new Agent({ keepAlive: true, maxFreeSockets: 1024 });
// Hop-by-hop headers are per connection and must not be relayed.
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te']);

function relayHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in h) if (!HOP.has(name)) out[name] = h[name];
  return out;
}

// Its event-loop delay, measured as the gateway's prom-client measures its own (10 ms resolution,
// reset by each scrape), so the benchmark compares the two under the same load.
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();

// Its collections by kind, printed like prom-client's nodejs_gc_duration_seconds count and sum
// (the gateway's /metrics has them), so the benchmark compares the two proxies' GC.
const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
const gc = new Map<string, { count: number; seconds: number }>();
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const detail = (e as { detail?: { kind?: number } }).detail;
    const kind = GC_KINDS[detail?.kind ?? -1] ?? 'other';
    const t = gc.get(kind) ?? { count: 0, seconds: 0 };
    t.count++;
    t.seconds += e.duration / 1000;
    gc.set(kind, t);
  }
}).observe({ entryTypes: ['gc'] });

const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
  if (req.url === '/metrics') {
    const s = (ns: number): string => String(ns / 1e9);
    let gcLines = '';
    for (const [kind, t] of gc)
      gcLines +=
        `proxyxai_nodejs_gc_duration_seconds_count{kind="${kind}"} ${t.count}\n` +
        `proxyxai_nodejs_gc_duration_seconds_sum{kind="${kind}"} ${t.seconds}\n`;
    res.end(
      `proxyxai_nodejs_eventloop_lag_max_seconds ${s(loop.max)}\n` +
        `proxyxai_nodejs_eventloop_lag_p99_seconds ${s(loop.percentile(99))}\n` +
        gcLines,
    );
    loop.reset();
    return;
  }
  const headers = relayHeaders(req.headers);
  headers['authorization'] = AUTH;
  headers['host'] = upstream.host;
  const upReq = request({
    agent,
    host: upstream.hostname,
    port: upstream.port,
    method: req.method,
    path: req.url,
    headers,
  });
  upReq.on('response', (upRes) => {
    res.writeHead(upRes.statusCode ?? 502, relayHeaders(upRes.headers));
    upRes.pipe(res);
  });
  upReq.on('error', () => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"bad gateway"}}');
    } else {
      res.destroy();
    }
  });
  res.on('close', () => {
    if (!res.writableFinished) upReq.destroy();
  });
  req.pipe(upReq);
});
// Node's default listen backlog (511), like the gateway.
server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`reference proxy listening on 127.0.0.1:${PORT}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
