import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Calendar, isUtcZone } from '../../src/billing/calendar.js';

const intlDay = (zone: string, ms: number): string =>
  new Intl.DateTimeFormat('en-CA', {
    timeZone: zone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).format(ms);

describe('Calendar', () => {
  it('computes UTC days without Intl, exactly as Intl does', () => {
    const cal = new Calendar('UTC');
    const start = Date.UTC(2024, 0, 1);
    for (let ms = start; ms < start + 400 * 86_400_000; ms += 3_599_999) {
      expect(cal.dayOf(ms)).toBe(intlDay('UTC', ms));
    }
    expect(cal.periodOf(Date.UTC(2026, 1, 28, 23, 59, 59))).toEqual({ day: '2026-02-28', month: '2026-02' });
    expect(cal.startOfDay('2026-03-01')).toBe(Date.UTC(2026, 2, 1));
  });

  it('counts days in another zone, across a DST change', () => {
    const cal = new Calendar('America/New_York');
    // 2026-03-08 02:00 EST → EDT. 04:30 UTC is still the 7th in New York (23:30 EST).
    expect(cal.dayOf(Date.UTC(2026, 2, 8, 4, 30))).toBe('2026-03-07');
    expect(cal.dayOf(Date.UTC(2026, 2, 8, 5, 30))).toBe('2026-03-08');
    expect(cal.startOfDay('2026-03-08')).toBe(Date.UTC(2026, 2, 8, 5)); // midnight EST
    expect(cal.startOfDay('2026-03-09')).toBe(Date.UTC(2026, 2, 9, 4)); // midnight EDT
  });

  it('recognises the names of UTC only', () => {
    for (const z of ['UTC', 'Etc/UTC', 'GMT', 'etc/gmt', 'Zulu']) expect(isUtcZone(z)).toBe(true);
    for (const z of ['Europe/London', 'Africa/Abidjan', 'Etc/GMT+1', '']) expect(isUtcZone(z)).toBe(false);
  });

  it('defaults to the system zone: UTC without Intl, other zones by name', () => {
    const run = (tz: string): string =>
      execFileSync(
        process.execPath,
        [
          '--import',
          'tsx',
          '-e',
          "import('./src/billing/calendar.ts').then((m) => process.stdout.write(m.systemTimeZone()))",
        ],
        { env: { ...process.env, TZ: tz }, encoding: 'utf8' },
      );
    expect(run('UTC')).toBe('UTC');
    expect(run('Etc/UTC')).toBe('UTC');
    expect(run('Asia/Tokyo')).toBe('Asia/Tokyo');
    expect(run('Europe/London')).toBe('Europe/London');
  });
});
