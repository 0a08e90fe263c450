// The settlement journal's files: one write per event-loop turn, read back after a crash (a torn
// last line skipped), a new file at each cut of the state writer, files deleted only once a flush
// covers them, and a failed write that neither loses the settlements in memory nor tears the
// lines written after it.
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  decodeEntries,
  encodeEntry,
  JOURNAL_COLUMNS,
  type SettlementEntry,
} from '../../src/journal/settlement-entry.js';
import { SettlementJournal } from '../../src/journal/settlement-journal.js';
import { NO_LOG_DETAIL } from '../../src/store/batch-sink.js';

const log = pino({ level: 'silent' });
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  vi.restoreAllMocks();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'proxyxai-journal-'));
  dirs.push(d);
  return d;
}

function entry(id: string, cost = 1_000, account = 7): SettlementEntry {
  return {
    account,
    at: 1_700_000_000_000,
    rows: [
      {
        request_id: id,
        account_id: account,
        model: 'gpt-4o-mini',
        path: '/v1/chat/completions',
        day: '2023-11-14',
        prompt_tokens: 10,
        cached_tokens: 0,
        completion_tokens: 20,
        cost,
        status: 200,
        outcome: 'completed',
        attempts: 1,
        usage_source: 'upstream',
        ...NO_LOG_DETAIL,
        created_at: 1_700_000_000_000,
      },
    ],
  };
}

const files = (dir: string): string[] => readdirSync(dir).sort();
const ids = (j: SettlementJournal): string[] => j.recovered.map((e) => e.rows[0]!.request_id);

describe('journal entries', () => {
  it('read back exactly what was written, line by line', () => {
    const text = encodeEntry(entry('a')) + encodeEntry(entry('b', 5));
    expect(decodeEntries(text)).toEqual({ entries: [entry('a'), entry('b', 5)], skipped: 0 });
  });

  it('are compact: each row an array of its values in JOURNAL_COLUMNS order', () => {
    const e = entry('a');
    const line = encodeEntry(e);
    const parsed = JSON.parse(line) as { v: number; rows: unknown[][] };
    expect(parsed.v).toBe(2);
    const row = e.rows[0]!;
    expect([...JOURNAL_COLUMNS].sort()).toEqual(Object.keys(row).sort());
    expect(parsed.rows[0]).toEqual(JOURNAL_COLUMNS.map((c) => row[c]));
    expect(line.length).toBeLessThan(JSON.stringify(e).length * 0.6);
  });

  it('read back every value: awkward text, nulls and log details, several rows', () => {
    const awkward = 'quote " backslash \\ newline \n tab \t nul \u0000 line sep \u2028 lone \ud800 emoji 🙂';
    const base = entry('x').rows[0]!;
    const e: SettlementEntry = {
      account: 7,
      at: 1_700_000_000_123,
      rows: [
        {
          ...base,
          request_id: `req_${awkward}`,
          model: awkward,
          path: '/v1/responses',
          outcome: 'client-gone',
          usage_source: 'estimate',
          stream: 1,
          reasoning_tokens: 12,
          images: 2,
          audio_ms: 1_500,
          characters: 99,
          rates: 2_500_000,
          latency_ms: 1_234,
          ttfb_ms: 56,
          client_ip: '2001:db8::1',
          error_code: awkward,
        },
        { ...base, request_id: 'req_x:gpt-4o', model: 'gpt-4o', cost: 0, latency_ms: null, ttfb_ms: null },
      ],
    };
    expect(decodeEntries(encodeEntry(e))).toEqual({ entries: [{ ...e, rows: [...e.rows] }], skipped: 0 });
  });

  it('write a number JSON cannot hold as null: the line parses and its entry is skipped alone', () => {
    const bad = { ...entry('bad'), rows: [{ ...entry('bad').rows[0]!, cost: Number.NaN }] };
    const text = encodeEntry(entry('a')) + encodeEntry(bad) + encodeEntry(entry('b'));
    expect(() =>
      text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as unknown),
    ).not.toThrow();
    expect(decodeEntries(text)).toEqual({ entries: [entry('a'), entry('b')], skipped: 1 });
  });

  it('read back lines of the keyed form an earlier version wrote', () => {
    const old = `${JSON.stringify(entry('legacy'))}\n`;
    expect(decodeEntries(old + encodeEntry(entry('new')))).toEqual({
      entries: [entry('legacy'), entry('new')],
      skipped: 0,
    });
  });

  it('skip compact lines that are not entries: wrong arity, wrong types, another account, an unknown version', () => {
    const good = JSON.parse(encodeEntry(entry('x'))) as { rows: unknown[][] };
    const row = good.rows[0]!;
    const line = (rows: unknown[], extra: object = {}): string =>
      JSON.stringify({ account: 7, at: 1_700_000_000_000, v: 2, rows, ...extra });
    const bad = [
      line([row.slice(1)]),
      line([[...row, 1]]),
      line([row.map((v, i) => (JOURNAL_COLUMNS[i] === 'cost' ? '1000' : v))]),
      line([row.map((v, i) => (JOURNAL_COLUMNS[i] === 'cost' ? -5 : v))]),
      line([row.map((v, i) => (JOURNAL_COLUMNS[i] === 'account_id' ? 8 : v))]),
      line([{ ...entry('x').rows[0] }]),
      line([row], { v: 3 }),
    ];
    const text = bad.map((l) => `${l}\n`).join('') + encodeEntry(entry('ok'));
    expect(decodeEntries(text)).toEqual({ entries: [entry('ok')], skipped: bad.length });
  });

  it('skip a torn last line, even one that is valid JSON but lacks its newline', () => {
    const whole = encodeEntry(entry('a'));
    const next = encodeEntry(entry('b'));
    for (const cut of [1, 20, next.length - 2, next.length - 1]) {
      expect(decodeEntries(whole + next.slice(0, cut))).toEqual({ entries: [entry('a')], skipped: 1 });
    }
  });

  it('skip lines that are not entries: garbage, wrong types, rows of another account, negative costs', () => {
    const bad = [
      'not json',
      '{"account":7}',
      JSON.stringify({ ...entry('x'), rows: [] }),
      JSON.stringify(entry('x', 1, 8)).replace('"account":8', '"account":7'),
      JSON.stringify(entry('x', -1)),
      JSON.stringify({ ...entry('x'), at: 'soon' }),
    ];
    const text = bad.map((l) => `${l}\n`).join('') + encodeEntry(entry('ok'));
    expect(decodeEntries(text)).toEqual({ entries: [entry('ok')], skipped: bad.length });
  });
});

describe('the journal files', () => {
  it('writes every settlement of a turn in one write, before written() resolves', async () => {
    const dir = tempDir();
    const j = SettlementJournal.open({ dir, fsync: false, log });
    j.append(entry('a'));
    j.append(entry('b'));
    const first = j.written();
    expect(files(dir)).toEqual([]); // not before the end of the turn
    await first;
    expect(files(dir)).toEqual(['settlements-00000001.jsonl']);
    const text = readFileSync(join(dir, 'settlements-00000001.jsonl'), 'utf8');
    expect(decodeEntries(text).entries.map((e) => e.rows[0]!.request_id)).toEqual(['a', 'b']);
    // Nothing pending: resolved at once.
    await j.written();
    await j.close(false);
  });

  it('hands what it finds at open to the replay, and numbers its own files after them', async () => {
    const dir = tempDir();
    const a = SettlementJournal.open({ dir, fsync: false, log });
    a.append(entry('a'));
    await a.written();
    a.cut();
    a.append(entry('b'));
    await a.written();
    // Killed: no close. A write was cut off in the middle of its line.
    appendFileSync(join(dir, 'settlements-00000003.jsonl'), encodeEntry(entry('c')).slice(0, 30));
    const b = SettlementJournal.open({ dir, fsync: false, log });
    expect(ids(b)).toEqual(['a', 'b']);
    expect(b.skipped).toBe(1);
    b.append(entry('d'));
    await b.written();
    expect(files(dir)).toEqual([
      'settlements-00000001.jsonl',
      'settlements-00000003.jsonl',
      'settlements-00000004.jsonl',
    ]);
    await b.close(false);
  });

  it('deletes a file once a flush covers it, and never a file written after the cut', async () => {
    const dir = tempDir();
    const j = SettlementJournal.open({ dir, fsync: false, log });
    j.dropRecovered();
    j.append(entry('a'));
    await j.written();
    const cut = j.cut(); // the writer snapshots 'a'
    j.append(entry('b')); // settled while the batch is written
    await j.written();
    expect(files(dir)).toHaveLength(2);
    j.covered(cut);
    expect(files(dir)).toEqual(['settlements-00000003.jsonl']);
    expect(decodeEntries(readFileSync(join(dir, files(dir)[0]!), 'utf8')).entries).toEqual([entry('b')]);
    // A failed flush covers nothing; the next successful one covers both cuts.
    const failed = j.cut();
    j.append(entry('c'));
    await j.written();
    const next = j.cut();
    expect(failed).toBeLessThan(next);
    j.covered(next);
    expect(files(dir)).toEqual([]);
    await j.close(true);
  });

  it('keeps the files of the previous process until a flush after the replay covers them', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'settlements-00000009.jsonl'), encodeEntry(entry('old')));
    const j = SettlementJournal.open({ dir, fsync: false, log });
    expect(ids(j)).toEqual(['old']);
    // A flush before the replay (the root account written at start-up) covers nothing old.
    const early = j.cut();
    j.replayed();
    j.covered(early);
    expect(files(dir)).toEqual(['settlements-00000009.jsonl']);
    const after = j.cut();
    j.covered(after);
    expect(files(dir)).toEqual([]);
    await j.close(true);
  });

  it('drops the files at once when the store already has everything they hold', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'settlements-00000002.jsonl'), encodeEntry(entry('old')));
    writeFileSync(join(dir, 'unrelated.txt'), 'kept');
    const j = SettlementJournal.open({ dir, fsync: false, log });
    j.dropRecovered();
    expect(files(dir)).toEqual(['unrelated.txt']);
    await j.close(true);
  });

  it('closes clean (everything in the store) without a file, and unclean with every file kept', async () => {
    const dir = tempDir();
    const j = SettlementJournal.open({ dir, fsync: false, log });
    j.dropRecovered();
    j.append(entry('a'));
    // Pending at close: written first.
    await j.close(false);
    expect(ids(SettlementJournal.open({ dir, fsync: false, log }))).toEqual(['a']);
    const again = SettlementJournal.open({ dir, fsync: false, log });
    again.dropRecovered();
    again.append(entry('b'));
    await again.written();
    await again.close(true);
    // No file, and no folder either.
    expect(existsSync(dir)).toBe(false);
  });

  it('with fsync, resolves written() after the data is synced, writes in order, and deletes after writes', async () => {
    const dir = tempDir();
    const j = SettlementJournal.open({ dir, fsync: true, log });
    j.dropRecovered();
    j.append(entry('a'));
    const a = j.written();
    await new Promise((r) => setImmediate(r));
    j.append(entry('b'));
    const b = j.written();
    const cut = j.cut();
    j.covered(cut);
    await Promise.all([a, b]);
    await j.close(false);
    // 'a' went to the first file (deleted once covered), 'b' to the file after the cut.
    const left = SettlementJournal.open({ dir, fsync: false, log });
    expect(ids(left)).toEqual(['b']);
    await left.close(false);
  });

  it('survives a failed write: reports it, still resolves, and starts a new file for the next one', async () => {
    const dir = tempDir();
    const j = SettlementJournal.open({ dir, fsync: false, log });
    j.dropRecovered();
    j.append(entry('a'));
    await j.written();
    // The directory disappears (a full or broken disk): the next file cannot be created.
    j.cut();
    rmSync(dir, { recursive: true, force: true });
    j.append(entry('b'));
    await j.written();
    expect(j.health.failures).toBe(1);
    expect(j.health.error).toMatch(/ENOENT/);
    // The disk is back: writes go on in a new file, and the health clears.
    expect(existsSync(dir)).toBe(false);
    mkdirSync(dir);
    j.append(entry('c'));
    await j.written();
    expect(j.health.failures).toBe(0);
    expect(ids(SettlementJournal.open({ dir, fsync: false, log }))).toEqual(['c']);
    await j.close(false);
  });
});
