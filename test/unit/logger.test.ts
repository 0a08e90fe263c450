// The logs: an error keeps its message, stack and code, and no key survives in any of them.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.js';

function capture(): { lines: Record<string, unknown>[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, stream };
}

describe('logger', () => {
  it('writes an error with its type, message, stack and own fields, keys masked', async () => {
    const { lines, stream } = capture();
    const log = createLogger('info', stream);
    const key = 'sk-' + 'Q'.repeat(40);
    const err = Object.assign(new TypeError(`upstream said no to ${key}`), { code: 'E_UPSTREAM' });
    log.error({ err, account: 4 }, 'could not do it');
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    const logged = lines[0]?.['err'] as Record<string, unknown>;
    expect(logged['type']).toBe('TypeError');
    expect(logged['message']).toBe('upstream said no to sk-QQQQ***');
    expect(logged['code']).toBe('E_UPSTREAM');
    expect(String(logged['stack'])).toContain('logger.test.ts');
    expect(JSON.stringify(lines)).not.toContain(key);
    expect(lines[0]?.['account']).toBe(4);
  });

  it('keeps an error nested in another field and a cause', async () => {
    const { lines, stream } = capture();
    const log = createLogger('info', stream);
    const cause = new Error('connection reset');
    log.warn({ detail: { failure: new Error('write failed', { cause }) } }, 'nested');
    await new Promise((r) => setImmediate(r));
    const failure = (lines[0]?.['detail'] as Record<string, Record<string, unknown>>)['failure'];
    expect(failure?.['message']).toContain('write failed');
    expect(JSON.stringify(failure)).toContain('connection reset');
  });
});
