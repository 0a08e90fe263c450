import { describe, expect, it } from 'vitest';
import { nextRequestId } from '../../src/http/server.js';

describe('nextRequestId', () => {
  it('is unique and sorts by time, also across milliseconds', async () => {
    const ids: string[] = [];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 2_000; i++) ids.push(nextRequestId());
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.every((id) => /^req_[0-9a-z]+[0-9a-f]{8}[0-9a-z]{5}$/.test(id))).toBe(true);
    // The millisecond part is non-decreasing in issue order.
    const ms = ids.map((id) => parseInt(id.slice(4, id.length - 13), 36));
    for (let i = 1; i < ms.length; i++) expect(ms[i]).toBeGreaterThanOrEqual(ms[i - 1] as number);
    expect(new Set(ms).size).toBeGreaterThan(1);
  });
});
