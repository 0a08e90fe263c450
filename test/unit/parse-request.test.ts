import { describe, expect, it } from 'vitest';
import { multipartField, parseRequest } from '../../src/proxy/parse-request.js';

const json = { 'content-type': 'application/json' };
const parse = (path: string, body: string) => {
  const r = parseRequest(path, json, Buffer.from(body));
  if (!r.ok) throw new Error(r.error.message);
  return r.req;
};

describe('parseRequest', () => {
  it('sends non-stream bodies byte-identical', () => {
    const raw = '{ "model":"gpt-4o-mini",  "messages":[] }';
    const req = parse('/v1/chat/completions', raw);
    expect(req.body?.toString()).toBe(raw);
    expect(req.model).toBe('gpt-4o-mini');
    expect(req.stripUsageChunk).toBe(false);
  });

  it('asks upstream for stream usage by splicing, and marks the chunk for stripping', () => {
    const raw = ' {"model":"m","stream":true,"messages":[{"role":"user","content":"{x}"}]}';
    const req = parse('/v1/chat/completions', raw);
    expect(req.stripUsageChunk).toBe(true);
    expect(JSON.parse(req.body!.toString())).toEqual({
      ...JSON.parse(raw),
      stream_options: { include_usage: true },
    });
  });

  it('merges into existing stream_options and leaves a body that already asks for usage alone', () => {
    const merged = parse('/v1/chat/completions', '{"model":"m","stream":true,"stream_options":{"x":1}}');
    expect(JSON.parse(merged.body!.toString()).stream_options).toEqual({ x: 1, include_usage: true });
    const raw = '{"model":"m","stream":true,"stream_options":{"include_usage":true}}';
    const asked = parse('/v1/chat/completions', raw);
    expect(asked.body?.toString()).toBe(raw);
    expect(asked.stripUsageChunk).toBe(false);
  });

  it('does not touch streams of other endpoints', () => {
    const raw = '{"model":"m","stream":true}';
    expect(parse('/v1/responses', raw).body?.toString()).toBe(raw);
  });

  it('reads model and stream from multipart without parsing files', () => {
    const body = Buffer.from(
      '--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n\r\n\x00\x01\r\n--b--\r\n',
      'latin1',
    );
    expect(multipartField(body, 'model')).toBe('whisper-1');
    const r = parseRequest(
      '/v1/audio/transcriptions',
      { 'content-type': 'multipart/form-data; boundary=b' },
      body,
    );
    expect(r.ok && r.req.model).toBe('whisper-1');
  });
});
