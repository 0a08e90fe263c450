/**
 * Pure rules of the sub-account API: what a valid Name or E-mail looks like, and how the IP and
 * model whitelists change under `AllowIPs`/`DenyIPs`/`AllowModels`/`DenyModels` (spec §4.6), and
 * which refused endpoint families `AllowEndpoints` may open.
 * No state, no clock: the account service applies the results.
 */
import { ENABLEABLE_FAMILIES, isEnableableFamily } from '../tenancy/families.js';
import type { Account } from './account.js';
import { isValidIpEntry } from './ip-matcher.js';

/** Shortest and longest Name, in characters (code points, after NFC). */
export const NAME_MIN = 4;
export const NAME_MAX = 63;
/** Letters, combining marks and digits of any script, plus `_`, `-` and `.`. */
const NAME_CHARS = /^[\p{L}\p{M}\p{N}_.-]+$/u;

/**
 * What is wrong with a Name, if anything. Names may be written in any script (`测试账号`,
 * `张伟k2x9`, `José`): 4–63 characters of letters, combining marks, digits, `_`, `-` and `.`,
 * with at least one letter (so that a Name is never taken for an ID) and no combining mark
 * first. Spaces, punctuation, symbols, control and invisible characters (zero-width spaces,
 * joiners, direction marks) are refused, so that two names that look the same are the same.
 * `name` must already be in NFC (see `normalizeName`).
 */
export function nameProblem(name: string): string | undefined {
  const length = [...name].length;
  if (length < NAME_MIN || length > NAME_MAX)
    return `Name must be ${NAME_MIN} to ${NAME_MAX} characters long.`;
  // Letters and marks that draw nothing (Hangul fillers, variation selectors, the grapheme joiner)
  // are in the allowed categories: Unicode's default-ignorable property names them.
  if (!NAME_CHARS.test(name) || /\p{Default_Ignorable_Code_Point}/u.test(name))
    return 'Name may only contain letters, digits, "_", "-" and "." (no spaces, punctuation, symbols or invisible characters).';
  if (/^\p{M}/u.test(name)) return 'Name must not begin with a combining mark.';
  if (!/\p{L}/u.test(name)) return 'Name must contain at least one letter.';
  return undefined;
}

/** The stored form of a Name: Unicode NFC, so that one name has one spelling. */
export function normalizeName(name: string): string {
  return name.normalize('NFC');
}

/**
 * The key under which Names and E-mails are unique and looked up: compatibility-normalised
 * (NFKC: full-width `ＡＢＣ` is `ABC`) and case-folded for every script, not only A–Z.
 * Lowering alone is not a fold: `ΟΔΟΣ` lowers to `οδος` (final sigma) but `οδοσ` stays as it
 * is, and `ẞ` lowers to `ß` where `SS` lowers to `ss`. Lower, upper, lower again maps every
 * spelling of a letter to one form; a final NFKC keeps the key normalised.
 */
export function foldKey(text: string): string {
  return text.normalize('NFKC').toLowerCase().toUpperCase().toLowerCase().normalize('NFKC');
}

/** A deliberately simple address check: one `@`, no spaces, a dot in the domain, ≤ 254 chars. */
export function isValidEmail(email: string): boolean {
  return email.length <= 254 && /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/.test(email);
}

/** Model names: non-empty, printable, no spaces, at most 200 characters. */
export function isValidModelName(model: string): boolean {
  return model.length > 0 && model.length <= 200 && /^[\x21-\x7e]+$/.test(model);
}

/** The only address that may call when `DenyIPs` is `"*"` (spec §4.6: effectively blocked). */
export const LOCALHOST_ONLY: readonly string[] = ['127.0.0.1'];

export type ListChange<T> = { ok: true; value: T } | { ok: false; field: string; message: string };

function dedupe(list: readonly string[]): string[] {
  return [...new Set(list)];
}

function starProblem(field: string, entries: readonly string[]): ListChange<never> | undefined {
  if (entries.includes('*') && entries.length > 1)
    return { ok: false, field, message: `${field}: "*" must be given alone.` };
  return undefined;
}

/**
 * New IP whitelist (null = any address). `AllowIPs` adds entries (`"*"` = unrestricted); `DenyIPs`
 * removes entries (`"*"` = only 127.0.0.1). Allow is applied before Deny. Removing from an
 * unrestricted list cannot be expressed by a whitelist and is refused rather than ignored.
 */
export function changeIps(
  current: readonly string[] | null,
  allow: readonly string[] | undefined,
  deny: readonly string[] | undefined,
): ListChange<string[] | null> {
  let list: string[] | null = current === null ? null : [...current];
  if (allow !== undefined && allow.length > 0) {
    const bad = starProblem('AllowIPs', allow);
    if (bad !== undefined) return bad;
    const invalid = allow.find((e) => e !== '*' && !isValidIpEntry(e));
    if (invalid !== undefined)
      return {
        ok: false,
        field: 'AllowIPs',
        message: `AllowIPs: "${invalid}" is not an IP address or CIDR.`,
      };
    list = allow[0] === '*' ? null : dedupe([...(list ?? []), ...allow]);
  }
  if (deny !== undefined && deny.length > 0) {
    const bad = starProblem('DenyIPs', deny);
    if (bad !== undefined) return bad;
    if (deny[0] === '*') return { ok: true, value: [...LOCALHOST_ONLY] };
    const invalid = deny.find((e) => !isValidIpEntry(e));
    if (invalid !== undefined)
      return { ok: false, field: 'DenyIPs', message: `DenyIPs: "${invalid}" is not an IP address or CIDR.` };
    if (list === null) {
      return {
        ok: false,
        field: 'DenyIPs',
        message:
          'DenyIPs removes entries from the IP whitelist, but this account allows every address; set AllowIPs first.',
      };
    }
    list = list.filter((e) => !deny.includes(e));
  }
  return { ok: true, value: list };
}

/**
 * New model whitelist (null = every model). `AllowModels` adds (`"*"` = unrestricted), `DenyModels`
 * removes (`"*"` = nothing allowed). `ceiling` is the caller's own whitelist: an account cannot hand
 * out models it may not use itself, so with a ceiling `"*"` means "the caller's models" and any
 * model outside it is refused.
 */
export function changeModels(
  current: ReadonlySet<string> | null,
  allow: readonly string[] | undefined,
  deny: readonly string[] | undefined,
  ceiling: ReadonlySet<string> | null,
): ListChange<Set<string> | null> {
  let set: Set<string> | null = current === null ? null : new Set(current);
  if (allow !== undefined && allow.length > 0) {
    const bad = starProblem('AllowModels', allow);
    if (bad !== undefined) return bad;
    const invalid = allow.find((m) => m !== '*' && !isValidModelName(m));
    if (invalid !== undefined)
      return { ok: false, field: 'AllowModels', message: `AllowModels: "${invalid}" is not a model name.` };
    if (ceiling !== null) {
      const outside = allow.find((m) => m !== '*' && !ceiling.has(m));
      if (outside !== undefined) {
        return {
          ok: false,
          field: 'AllowModels',
          message: `AllowModels: "${outside}" is not allowed for your own key, so you cannot allow it.`,
        };
      }
    }
    if (allow[0] === '*') set = ceiling === null ? null : new Set(ceiling);
    else set = new Set([...(set ?? []), ...allow]);
  }
  if (deny !== undefined && deny.length > 0) {
    const bad = starProblem('DenyModels', deny);
    if (bad !== undefined) return bad;
    if (deny[0] === '*') return { ok: true, value: new Set() };
    if (set === null) {
      return {
        ok: false,
        field: 'DenyModels',
        message:
          'DenyModels removes models from the whitelist, but this account may use every model; set AllowModels first.',
      };
    }
    for (const m of deny) set.delete(m);
  }
  return { ok: true, value: set };
}

/**
 * New set of opened endpoint families (`AllowEndpoints` replaces it; `[]` closes them all). Only
 * families refused by default can be opened, and only by an account that has them itself (root
 * has all): an opened family is unmetered spend the caller vouches for.
 */
export function changeEndpoints(
  requested: readonly string[] | undefined,
  caller: Pick<Account, 'isRoot' | 'allowEndpoints'>,
): { ok: true; value: Set<string> | null } | { ok: false; message: string } {
  if (requested === undefined) return { ok: true, value: null };
  for (const name of requested) {
    if (!isEnableableFamily(name)) {
      return {
        ok: false,
        message: `AllowEndpoints: "${name.slice(0, 100)}" is not a family that can be opened (${ENABLEABLE_FAMILIES.join(', ')}).`,
      };
    }
    if (!caller.isRoot && !(caller.allowEndpoints?.has(name) ?? false)) {
      return {
        ok: false,
        message: `AllowEndpoints: "${name}" is not open for your own key, so you cannot open it.`,
      };
    }
  }
  return { ok: true, value: requested.length === 0 ? null : new Set(requested) };
}
