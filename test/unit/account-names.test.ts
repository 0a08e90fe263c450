// Names in any script (issue 13): what a Name may contain, its stored form (NFC), and the key under
// which Names and E-mails are unique and looked up (NFKC + case folding in every script). The
// lookups themselves, over the store's folded columns, are in account-cache.test.ts.
import { describe, expect, it } from 'vitest';
import { foldKey, nameProblem, normalizeName } from '../../src/accounts/account-rules.js';

describe('nameProblem', () => {
  it.each([
    '测试账号',
    '张伟k2x9',
    'José',
    'Ünïcödé',
    'नमस्ते', // Devanagari: letters and combining vowel signs
    'Ελληνικά',
    'Русский',
    'child-1',
    'a.b_c',
    '𠀀𠀁𠀂𠀃', // four CJK letters outside the BMP (eight UTF-16 units)
    '名'.repeat(63),
    'x١٢٣', // Arabic-Indic digits after a letter
  ])('accepts %s', (name) => {
    expect(nameProblem(normalizeName(name))).toBeUndefined();
  });

  it.each([
    ['abc', 'characters long'],
    ['测试', 'characters long'],
    ['名'.repeat(64), 'characters long'],
    ['12345', 'at least one letter'],
    ['١٢٣٤', 'at least one letter'],
    ['has space', 'may only contain'],
    ['全角\u3000空格', 'may only contain'], // ideographic space
    ['zero\u200bwidth', 'may only contain'], // zero-width space
    ['join\u200dme', 'may only contain'], // zero-width joiner
    ['bidi\u202eevil', 'may only contain'], // right-to-left override
    ['\u3164\u3164abc', 'may only contain'], // Hangul fillers: letters that draw nothing
    ['abc\u034fd', 'may only contain'], // combining grapheme joiner
    ['abc\ufe0fd', 'may only contain'], // variation selector
    ['tab\tname', 'may only contain'],
    ['smile😀face', 'may only contain'],
    ['名字，好', 'may only contain'], // full-width comma
    ['\u0301accent', 'combining mark'],
  ])('refuses %j (%s)', (name, why) => {
    expect(nameProblem(normalizeName(name))).toContain(why);
  });

  it('counts characters, not UTF-16 units, after NFC', () => {
    // "é" as e + combining acute is two code points before NFC and one after.
    const decomposed = 'Jose\u0301';
    expect(normalizeName(decomposed)).toBe('José');
    expect([...normalizeName('ae\u0301c')].length).toBe(3);
    expect(nameProblem(normalizeName('ae\u0301c'))).toContain('characters long');
    expect(nameProblem(normalizeName('ae\u0301cd'))).toBeUndefined();
  });
});

describe('foldKey', () => {
  it.each([
    ['José', 'JOSÉ'],
    ['Jose\u0301', 'josé'], // NFD and NFC
    ['ΟΔΟΣ', 'οδοσ'], // final sigma: lowering alone gives οδος and οδοσ
    ['Straße', 'STRASSE'],
    ['ẞ', 'ss'],
    ['ＡＢＣＤ', 'abcd'], // full-width
    ['ＡＬＩＣＥ@ＥＸＡＭＰＬＥ.com', 'alice@example.com'],
    ['Ꭰꭰ', 'ᎠᎠ'], // Cherokee
    ['Привет', 'ПРИВЕТ'],
  ])('%s and %s are the same key', (a, b) => {
    expect(foldKey(a)).toBe(foldKey(b));
  });

  it.each([
    ['测试账号', '测试帐号'],
    ['İstanbul', 'istanbul'], // dotted capital I is another letter
    ['abcd', 'abce'],
  ])('%s and %s are different keys', (a, b) => {
    expect(foldKey(a)).not.toBe(foldKey(b));
  });
});
