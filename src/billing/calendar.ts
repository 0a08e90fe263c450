/**
 * Day and month boundaries in the configured time zone (TZ): usage windows, the monthly HardLimit
 * and the dashboard's daily costs all count calendar periods there. Results are cached per second
 * because the hot path asks on every request.
 *
 * UTC, the usual zone of servers and containers, is computed with plain Date arithmetic: the
 * first Intl.DateTimeFormat maps ICU's locale data into memory (about 8 MB resident).
 *
 * It also writes the times of the API (`iso`) with the zone's offset, as the original did
 * (`2023-10-24T18:46:12.304+08:00`); an offset of zero is written `Z`, as Go's RFC 3339 does.
 * Offsets come from Intl once per UTC day seen (a day with a DST change is bisected to the
 * second), then from a cache: a listing of a thousand accounts costs no Intl call per row.
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

const DAY_MS = 86_400_000;
/** Days whose offsets are remembered (about 27 years); the cache starts over beyond that. */
const MAX_CACHED_DAYS = 10_000;

/**
 * The offset (ms to add to UTC) during one UTC day: one number, or the instant (a whole second)
 * from which `after` applies when the zone changed its offset that day.
 */
type DayOffset = number | { readonly at: number; readonly before: number; readonly after: number };

/** "+08:00", "-03:30" (seconds of historical offsets are dropped, as RFC 3339 has none). */
function offsetSuffix(offsetMs: number): string {
  const sign = offsetMs < 0 ? '-' : '+';
  const minutes = Math.floor(Math.abs(offsetMs) / 60_000);
  const hh = String(Math.floor(minutes / 60)).padStart(2, '0');
  const mm = String(minutes % 60).padStart(2, '0');
  return `${sign}${hh}:${mm}`;
}

export class Calendar {
  /** Undefined for UTC. */
  private readonly fmt: Intl.DateTimeFormat | undefined;
  /** Wall-clock parts in the zone, for offsets (created with the first offset asked). */
  private partsFmt: Intl.DateTimeFormat | undefined;
  private readonly dayOffsets = new Map<number, DayOffset>();
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
    for (let i = 0; i < 2; i++) guess = Date.UTC(y, m - 1, d) - this.offsetAt(guess);
    return guess;
  }

  /**
   * The instant as ISO-8601 with this zone's offset at that instant, to the millisecond:
   * "2025-03-03T17:00:00.043+08:00"; "…Z" whenever the offset is zero (UTC itself always).
   */
  iso(epochMs: number): string {
    const offset = this.offsetAt(epochMs);
    if (offset === 0) return new Date(epochMs).toISOString();
    return new Date(epochMs + offset).toISOString().slice(0, 23) + offsetSuffix(offset);
  }

  /** Milliseconds to add to UTC for the wall-clock time in this zone at `at` (0 for UTC). */
  offsetAt(at: number): number {
    if (this.fmt === undefined) return 0;
    const day = Math.floor(at / DAY_MS);
    let known = this.dayOffsets.get(day);
    if (known === undefined) {
      known = this.scanDay(day);
      if (this.dayOffsets.size >= MAX_CACHED_DAYS) this.dayOffsets.clear();
      this.dayOffsets.set(day, known);
    }
    if (typeof known === 'number') return known;
    return at < known.at ? known.before : known.after;
  }

  /**
   * The offsets of one UTC day: the same at its first instant and at the next day's means no
   * change that day (zones change at most once a day); otherwise the change is bisected to the
   * second (offsets change on whole seconds, and Intl shows no finer).
   */
  private scanDay(day: number): DayOffset {
    const start = day * DAY_MS;
    const before = this.rawOffset(start);
    const after = this.rawOffset(start + DAY_MS);
    if (before === after) return before;
    let lo = start;
    let hi = start + DAY_MS;
    while (hi - lo > 1000) {
      const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
      if (this.rawOffset(mid) === before) lo = mid;
      else hi = mid;
    }
    return { at: hi, before, after };
  }

  /** The offset at `at` from Intl (whole seconds). */
  private rawOffset(at: number): number {
    this.partsFmt ??= new Intl.DateTimeFormat('en-US', {
      timeZone: this.timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    const parts = this.partsFmt.formatToParts(at);
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
