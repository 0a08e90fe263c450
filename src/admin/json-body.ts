/**
 * Reads an admin API body as a JSON object. The original's examples send JSON without a
 * Content-Type, so any content type is parsed as JSON. Keys that could reach an object's
 * prototype (`__proto__`, `constructor`, `prototype`) are dropped while parsing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import { readBody } from '../http/read-body.js';

export type JsonObject = Record<string, unknown>;

const ADMIN_BODY_LIMIT = 1024 * 1024;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

export async function readJsonObject(
  req: IncomingMessage,
  res: ServerResponse,
): Promise<{ ok: true; body: JsonObject } | { ok: false; error: GatewayError; answered: boolean }> {
  const read = await readBody(req, res, ADMIN_BODY_LIMIT);
  if (!read.ok) return read;
  if (read.body.length === 0) return { ok: true, body: Object.create(null) as JsonObject };
  let parsed: unknown;
  try {
    parsed = JSON.parse(read.body.toString('utf8'), (key, value: unknown) =>
      FORBIDDEN_KEYS.has(key) ? undefined : value,
    );
  } catch (err: unknown) {
    const detail = err instanceof Error ? err.message : 'parse error';
    return {
      ok: false,
      error: new GatewayError('invalid_json', `We could not parse the JSON body: ${detail}`),
      answered: false,
    };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { ok: false, error: new GatewayError('invalid_body'), answered: false };
  }
  return { ok: true, body: parsed as JsonObject };
}

/** Typed field readers: each returns the value, undefined when absent, or throws a 400. */
export const field = {
  string(body: JsonObject, name: string, opts: { min?: number; max?: number } = {}): string | undefined {
    const v = body[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw invalid(name, 'a string');
    const t = v.trim();
    if (t.length < (opts.min ?? 0) || t.length > (opts.max ?? 1000)) {
      throw invalid(name, `a string of ${opts.min ?? 0} to ${opts.max ?? 1000} characters`);
    }
    return t;
  },
  number(body: JsonObject, name: string, opts: { min?: number; max?: number } = {}): number | undefined {
    const v = body[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(name, 'a number');
    if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
      throw invalid(name, `a number between ${opts.min ?? '-∞'} and ${opts.max ?? '∞'}`);
    }
    return v;
  },
  integer(body: JsonObject, name: string, opts: { min?: number; max?: number } = {}): number | undefined {
    const v = field.number(body, name, opts);
    if (v !== undefined && !Number.isInteger(v)) throw invalid(name, 'a whole number');
    return v;
  },
  boolean(body: JsonObject, name: string): boolean | undefined {
    const v = body[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') throw invalid(name, 'true or false');
    return v;
  },
  /** Space- or comma-separated list given as a string, or an array of strings. */
  list(body: JsonObject, name: string): string[] | undefined {
    const v = body[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return v.split(/[\s,]+/).filter((s) => s !== '');
    if (Array.isArray(v) && v.every((x) => typeof x === 'string'))
      return v.map((s) => s.trim()).filter((s) => s !== '');
    throw invalid(name, 'a space-separated string or an array of strings');
  },
};

function invalid(name: string, what: string): GatewayError {
  return new GatewayError('invalid_value', `${name} must be ${what}.`, name);
}
