/**
 * Day and month boundaries in the configured time zone (TZ): usage windows, the monthly HardLimit
 * and the dashboard's daily costs all count calendar periods there. Results are cached per second
 * because the hot path asks on every request.
 *
 * UTC, the usual zone of servers and containers, is computed with plain Date arithmetic: the
 * first Intl.DateTimeFormat maps ICU's locale data into memory (about 8 MB resident).
 */

export interface Period {
  /** "YYYY-MM-DD" */
  readonly day: string;
  /** "YYYY-MM" */
  readonly month: string;
}

const UTC_NAMES = new Set([
  'utc',
  'etc/utc',
  'gmt',
  'etc/gmt',
  'uct',
  'etc/uct',
  'universal',
  'etc/universal',
  'zulu',
  'etc/zulu',
  'greenwich',
  'etc/greenwich',
  'gmt0',
  'etc/gmt0',
  'etc/gmt+0',
  'etc/gmt-0',
]);

/** True for the names of UTC itself (not for zones that only happen to be at +00:00 today). */
export function isUtcZone(timeZone: string): boolean {
  return UTC_NAMES.has(timeZone.toLowerCase());
}

/**
 * The system's zone for the TZ default: "UTC" when local time is UTC all year (checked with
 * Date, which needs no locale data), otherwise the zone name from Intl.
 */
export function systemTimeZone(now = new Date()): string {
  const y = now.getFullYear();
  if (new Date(y, 0, 1).getTimezoneOffset() === 0 && new Date(y, 6, 1).getTimezoneOffset() === 0)
    return 'UTC';
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

export class Calendar {
  /** Undefined for UTC. */
  private readonly fmt: Intl.DateTimeFormat | undefined;
  private cachedSecond = -1;
  private cached: Period = { day: '', month: '' };

  constructor(readonly timeZone: string) {
    this.fmt = isUtcZone(timeZone)
      ? undefined
      : new Intl.DateTimeFormat('en-CA', {
          timeZone,
          year: 'numeric',
          month: '2-digit',
          day: '2-digit',
        });
  }

  periodOf(now: number): Period {
    const second = Math.floor(now / 1000);
    if (second === this.cachedSecond) return this.cached;
    const day = this.dayOf(now);
    this.cached = { day, month: day.slice(0, 7) };
    this.cachedSecond = second;
    return this.cached;
  }

  dayOf(epochMs: number): string {
    // en-CA formats as YYYY-MM-DD, like the date part of an ISO string.
    return this.fmt === undefined ? new Date(epochMs).toISOString().slice(0, 10) : this.fmt.format(epochMs);
  }

  /** Epoch ms of 00:00 on `day` in this time zone (handles DST by correcting the offset twice). */
  startOfDay(day: string): number {
    const [y, m, d] = day.split('-').map(Number) as [number, number, number];
    let guess = Date.UTC(y, m - 1, d);
    for (let i = 0; i < 2; i++) guess = Date.UTC(y, m - 1, d) - this.offsetMs(guess);
    return guess;
  }

  private offsetMs(at: number): number {
    if (this.fmt === undefined) return 0;
    const parts = new Intl.DateTimeFormat('en-US', {
      timeZone: this.timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    }).formatToParts(at);
    const get = (t: string): number => Number(parts.find((p) => p.type === t)?.value ?? 0);
    const asUtc = Date.UTC(
      get('year'),
      get('month') - 1,
      get('day'),
      get('hour'),
      get('minute'),
      get('second'),
    );
    return asUtc - Math.floor(at / 1000) * 1000;
  }
}
