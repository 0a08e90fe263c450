import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it, vi } from 'vitest';
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

const isoFormats = new Map<string, Intl.DateTimeFormat>();

/** The instant as Intl writes it in `zone`, in the gateway's ISO form (zero offset: "Z"). */
function intlIso(zone: string, ms: number): string {
  let fmt = isoFormats.get(zone);
  if (fmt === undefined) {
    fmt = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      fractionalSecondDigits: 3,
      timeZoneName: 'longOffset',
    });
    isoFormats.set(zone, fmt);
  }
  const parts = fmt.formatToParts(ms);
  const get = (t: string): string => parts.find((p) => p.type === t)?.value ?? '';
  const offset = get('timeZoneName').slice(3); // "GMT+08:00", "GMT-03:30" or "GMT"
  const suffix = offset === '' || offset === '+00:00' ? 'Z' : offset;
  return `${get('year')}-${get('month')}-${get('day')}T${get('hour')}:${get('minute')}:${get('second')}.${get('fractionalSecond')}${suffix}`;
}

const SIX_HOURS = 6 * 3_600_000;

/** Offset changes of `zone` between two instants, to the millisecond, found with Intl alone. */
function transitions(zone: string, from: number, to: number): number[] {
  const offset = (ms: number): string => intlIso(zone, ms).slice(23);
  const out: number[] = [];
  let previous = offset(from);
  for (let t = from; t < to; t += SIX_HOURS) {
    const next = offset(t + SIX_HOURS);
    if (next === previous) continue;
    let lo = t;
    let hi = t + SIX_HOURS;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (offset(mid) === previous) lo = mid;
      else hi = mid;
    }
    out.push(hi);
    previous = next;
  }
  return out;
}

const ZONES = [
  'Asia/Shanghai',
  'America/New_York',
  'Europe/London',
  'Australia/Lord_Howe', // DST of 30 minutes
  'Asia/Kolkata', // +05:30
  'Asia/Kathmandu', // +05:45
  'America/St_Johns', // -03:30 / -02:30
  'Pacific/Chatham', // +12:45 / +13:45
  'Africa/Casablanca', // an hour less during Ramadan, a month at a time
  'America/Sao_Paulo', // DST until 2019, none since
];

describe('Calendar.iso: API times with the offset of TZ', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('writes UTC as toISOString does, and Asia/Shanghai as the original did (+08:00)', () => {
    const at = Date.UTC(2023, 9, 24, 10, 46, 12, 304);
    expect(new Calendar('UTC').iso(at)).toBe('2023-10-24T10:46:12.304Z');
    expect(new Calendar('Etc/UTC').iso(at)).toBe('2023-10-24T10:46:12.304Z');
    expect(new Calendar('Asia/Shanghai').iso(at)).toBe('2023-10-24T18:46:12.304+08:00');
    expect(Date.parse(new Calendar('Asia/Shanghai').iso(at))).toBe(at);
    expect(new Calendar('America/St_Johns').iso(at)).toBe('2023-10-24T08:16:12.304-02:30');
  });

  it('writes a zero offset as Z, as Go does (London in winter), and +01:00 in summer', () => {
    const cal = new Calendar('Europe/London');
    expect(cal.iso(Date.UTC(2026, 0, 15, 12))).toBe('2026-01-15T12:00:00.000Z');
    expect(cal.iso(Date.UTC(2026, 6, 15, 12))).toBe('2026-07-15T13:00:00.000+01:00');
  });

  it('switches offset at the exact millisecond of every DST change (New York, Lord Howe)', () => {
    const ny = new Calendar('America/New_York');
    // 2026-03-08 02:00 EST (07:00 UTC) → 03:00 EDT; 2026-11-01 02:00 EDT (06:00 UTC) → 01:00 EST.
    expect(ny.iso(Date.UTC(2026, 2, 8, 7) - 1)).toBe('2026-03-08T01:59:59.999-05:00');
    expect(ny.iso(Date.UTC(2026, 2, 8, 7))).toBe('2026-03-08T03:00:00.000-04:00');
    expect(ny.iso(Date.UTC(2026, 10, 1, 6) - 1)).toBe('2026-11-01T01:59:59.999-04:00');
    expect(ny.iso(Date.UTC(2026, 10, 1, 6))).toBe('2026-11-01T01:00:00.000-05:00');
    const lh = new Calendar('Australia/Lord_Howe');
    // 2026-10-04 02:00 +10:30 (2026-10-03 15:30 UTC) → 02:30 +11:00.
    expect(lh.iso(Date.UTC(2026, 9, 3, 15, 30) - 1)).toBe('2026-10-04T01:59:59.999+10:30');
    expect(lh.iso(Date.UTC(2026, 9, 3, 15, 30))).toBe('2026-10-04T02:30:00.000+11:00');
  });

  it.each(ZONES)('agrees with Intl in %s around every offset change of 2016–2027 and in between', (zone) => {
    const from = Date.UTC(2016, 0, 1);
    const to = Date.UTC(2028, 0, 1);
    const cal = new Calendar(zone);
    const changes = transitions(zone, from, to);
    for (const t of changes) {
      for (const ms of [t - 1001, t - 1, t, t + 1, t + 999]) expect(cal.iso(ms)).toBe(intlIso(zone, ms));
    }
    const fixed = ['Asia/Shanghai', 'Asia/Kolkata', 'Asia/Kathmandu'].includes(zone);
    expect(changes.length > 0).toBe(!fixed);
    // Instants at odd times, in a fresh calendar (another order of filling the cache).
    const other = new Calendar(zone);
    for (let ms = to; ms > from; ms -= 86_399_999 * 3) expect(other.iso(ms)).toBe(intlIso(zone, ms));
  });

  it('asks Intl about twice per UTC day seen, then answers from its cache', () => {
    const cal = new Calendar('America/New_York');
    const spy = vi.spyOn(Intl.DateTimeFormat.prototype, 'formatToParts');
    const start = Date.UTC(2026, 2, 1);
    // 10 000 instants over 31 days that include a DST change (2026-03-08).
    for (let i = 0; i < 10_000; i++) cal.iso(start + Math.floor((i * 31 * 86_400_000) / 10_000));
    const first = spy.mock.calls.length;
    expect(first).toBeLessThanOrEqual(2 * 32 + 20);
    for (let i = 0; i < 10_000; i++) cal.iso(start + Math.floor((i * 31 * 86_400_000) / 10_000) + 7);
    expect(spy.mock.calls.length).toBe(first);
  });
});
