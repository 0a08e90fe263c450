/**
 * Day and month boundaries in the configured time zone (TZ): usage windows, the monthly HardLimit
 * and the dashboard's daily costs all count calendar periods there. Results are cached per second
 * because the hot path asks on every request.
 */

export interface Period {
  /** "YYYY-MM-DD" */
  readonly day: string;
  /** "YYYY-MM" */
  readonly month: string;
}

export class Calendar {
  private readonly fmt: Intl.DateTimeFormat;
  private cachedSecond = -1;
  private cached: Period = { day: '', month: '' };

  constructor(readonly timeZone: string) {
    this.fmt = new Intl.DateTimeFormat('en-CA', {
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
    // en-CA formats as YYYY-MM-DD.
    return this.fmt.format(epochMs);
  }

  /** Epoch ms of 00:00 on `day` in this time zone (handles DST by correcting the offset twice). */
  startOfDay(day: string): number {
    const [y, m, d] = day.split('-').map(Number) as [number, number, number];
    let guess = Date.UTC(y, m - 1, d);
    for (let i = 0; i < 2; i++) guess = Date.UTC(y, m - 1, d) - this.offsetMs(guess);
    return guess;
  }

  private offsetMs(at: number): number {
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
