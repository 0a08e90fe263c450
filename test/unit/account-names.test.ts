// Names in any script (issue 13): what a Name may contain, its stored form (NFC), and the key under
// which Names and E-mails are unique and looked up (NFKC + case folding in every script).
import { describe, expect, it } from 'vitest';
import type { Account } from '../../src/accounts/account.js';
import { foldKey, nameProblem, normalizeName } from '../../src/accounts/account-rules.js';
import { AccountRegistry } from '../../src/accounts/account-registry.js';

function account(id: number, name: string, email: string): Account {
  return {
    id,
    parentId: null,
    name,
    email,
    keyHash: `hash-${id}`,
    childIds: new Set(),
  } as unknown as Account;
}

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

describe('AccountRegistry lookups by folded Name and E-mail', () => {
  it('finds an account by any case or normal form of its Name and E-mail', () => {
    const reg = new AccountRegistry();
    const jose = account(1, 'José', 'José@Example.com');
    const zh = account(2, '测试账号', 'ceshi@example.com');
    reg.add(jose);
    reg.add(zh);
    expect(reg.findByName('JOSÉ')).toBe(jose);
    expect(reg.findByName('jose\u0301')).toBe(jose);
    expect(reg.findByEmail('josé@example.COM')).toBe(jose);
    expect(reg.resolve('测试账号')).toBe(zh);
    expect(reg.resolve('ＣＥＳＨＩ@example.com')).toBe(zh);
    expect(reg.findByName('测试帐号')).toBeUndefined();
  });

  it('re-indexes a rename and forgets a removed account without touching another holder of the key', () => {
    const reg = new AccountRegistry();
    const a = account(1, 'ΟΔΟΣ', 'a@example.com');
    reg.add(a);
    expect(reg.findByName('οδοσ')).toBe(a);
    const old = { name: a.name, email: a.email, keyHash: a.keyHash };
    a.name = '道路名字';
    reg.reindex(a, old);
    expect(reg.findByName('οδοσ')).toBeUndefined();
    expect(reg.findByName('道路名字')).toBe(a);
    // A stale object under the same key (loaded twice) must not unindex the live one.
    const stale = account(1, '道路名字', 'a@example.com');
    const live = account(1, '道路名字', 'a@example.com');
    const reg2 = new AccountRegistry();
    reg2.add(stale);
    reg2.add(live);
    reg2.remove(stale);
    expect(reg2.findByName('道路名字')).toBe(live);
    expect(reg2.get(1)).toBe(live);
  });
});
