// The end of a complete answer waits for its settlement to be journaled: the relay holds back the
// last chunk of a body of known length, a stream's events from its terminal one on, and the end of
// the response, until the pipeline calls `release`. An answer that broke off has nothing to
// release.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Dispatcher } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { relayResponse, type Relayed } from '../../src/proxy/relay-response.js';
import { UpstreamBody } from '../../src/upstream/upstream-body.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

const controller = {
  pause: () => undefined,
  resume: () => undefined,
  abort: () => undefined,
} as unknown as Dispatcher.DispatchController;

/** An upstream answer fed by the test: chunks, then its end (or a failure). */
function upstream(headers: Record<string, string>, chunks: string[], ending: 'end' | 'fail') {
  const body = new UpstreamBody(controller);
  for (const c of chunks) body.push(Buffer.from(c));
  if (ending === 'end') body.end();
  else body.fail(new Error('upstream went away'));
  return { statusCode: 200, headers, body };
}

interface Client {
  text(): string;
  ended(): boolean;
  failed(): boolean;
}

/** Relays `answer` to a real client; resolves once the relay has returned. */
async function relay(answer: ReturnType<typeof upstream>): Promise<{ relayed: Relayed; client: Client }> {
  let relayed: Promise<Relayed> | undefined;
  const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
    relayed = relayResponse(res, answer, { stripUsageChunk: false, headers: { 'x-request-id': 'req_1' } });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  let text = '';
  let ended = false;
  let failed = false;
  const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
    res.on('data', (c: Buffer) => (text += c.toString('utf8')));
    res.on('end', () => (ended = true));
    res.on('error', () => (failed = true));
  });
  req.on('error', () => (failed = true));
  req.end();
  while (relayed === undefined) await new Promise((r) => setTimeout(r, 5));
  const result = await relayed;
  // Everything not held back has had time to arrive.
  await new Promise((r) => setTimeout(r, 100));
  return { relayed: result, client: { text: () => text, ended: () => ended, failed: () => failed } };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 100));

describe('the end of an answer waits for release', () => {
  it('a JSON body of known length: its last chunk', async () => {
    const body = ['{"id":"chatcmpl-1","choices":[],', '"usage":{"prompt_tokens":3,"completion_tokens":4}}'];
    const answer = upstream(
      { 'content-type': 'application/json', 'content-length': String(body.join('').length) },
      body,
      'end',
    );
    const { relayed, client } = await relay(answer);
    expect(relayed.end).toBe('completed');
    expect(relayed.usage).toMatchObject({ promptTokens: 3, completionTokens: 4 });
    expect(client.text()).toBe(body[0]);
    expect(client.ended()).toBe(false);
    relayed.release();
    await settle();
    expect(client.text()).toBe(body.join(''));
    expect(client.ended()).toBe(true);
  });

  it('a chat stream: from `data: [DONE]` on, and its end', async () => {
    const events = [
      'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n',
      'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n',
      'data: [DONE]\n\n',
    ];
    const { relayed, client } = await relay(upstream({ 'content-type': 'text/event-stream' }, events, 'end'));
    expect(relayed.end).toBe('completed');
    expect(client.text()).toBe(events[0]! + events[1]!);
    expect(client.ended()).toBe(false);
    relayed.release();
    await settle();
    expect(client.text()).toBe(events.join(''));
    expect(client.ended()).toBe(true);
  });

  it('a responses stream: from its terminal event on', async () => {
    const events = [
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n',
      'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
    ];
    const { relayed, client } = await relay(upstream({ 'content-type': 'text/event-stream' }, events, 'end'));
    expect(client.text()).toBe(events[0]);
    relayed.release();
    await settle();
    expect(client.text()).toBe(events.join(''));
    expect(client.ended()).toBe(true);
  });

  it('a stream without a terminal event: only the end of the response', async () => {
    const events = ['data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'];
    const { relayed, client } = await relay(upstream({ 'content-type': 'text/event-stream' }, events, 'end'));
    expect(client.text()).toBe(events[0]);
    expect(client.ended()).toBe(false);
    relayed.release();
    await settle();
    expect(client.ended()).toBe(true);
  });

  it('an answer that broke off: destroyed at once, nothing to release', async () => {
    const events = ['data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'];
    const { relayed, client } = await relay(
      upstream({ 'content-type': 'text/event-stream' }, events, 'fail'),
    );
    expect(relayed.end).toBe('upstream-error');
    expect(client.failed() || !client.ended()).toBe(true);
    relayed.release();
    await settle();
    expect(client.ended()).toBe(false);
  });
});
