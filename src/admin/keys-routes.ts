/**
 * /x-keys — the upstream key pool, root only. Beyond the original (add only, effective after a
 * reload): a key added here serves the very next request, and keys can be listed (masked),
 * enabled, disabled, grouped by upstream organisation and deleted. With several instances, a
 * change answered here is written to the store and announced: every live instance has applied it
 * when the answer leaves (unless one did not confirm in time; it then catches up by itself).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import type { KeyPool, KeyView } from '../keys/key-pool.js';
import { readJsonObject, field } from './json-body.js';
import { sendJson } from '../http/send-json.js';
import { utcIso, type TimeFormat } from './user-json.js';

/** `iso` writes the times (the calendar's `iso` gives them the TZ offset; UTC by default). */
export async function handleKeys(
  pool: KeyPool,
  req: IncomingMessage,
  res: ServerResponse,
  rest: string,
  iso: TimeFormat = utcIso,
): Promise<void> {
  const keyJson = (k: KeyView): Record<string, unknown> => keyView(k, iso);
  const method = req.method ?? 'GET';
  if (rest === '') {
    if (method === 'GET') return sendJson(res, 200, pool.list().map(keyJson));
    if (method === 'POST') {
      const body = await readJsonObject(req, res);
      if (!body.ok) {
        if (!body.answered) throw body.error;
        return;
      }
      const secret = field.string(body.body, 'SecretKey', { min: 8, max: 512 });
      if (secret === undefined)
        throw new GatewayError('invalid_value', 'SecretKey is required.', 'SecretKey');
      if (/\s/.test(secret))
        throw new GatewayError('invalid_value', 'SecretKey must not contain spaces.', 'SecretKey');
      const added = await pool.add(secret, group(body.body) ?? null);
      if (!added.ok)
        throw new GatewayError('duplicate', 'This upstream key is already in the pool.', 'SecretKey');
      return sendJson(res, 200, { Action: 'add', Key: keyJson(added.key) });
    }
    throw new GatewayError('method_not_allowed');
  }
  if (!/^\d{1,15}$/.test(rest)) throw new GatewayError('not_found', 'Unknown upstream key route.');
  const id = Number(rest);
  if (method === 'GET') {
    const key = await pool.lookup(id);
    if (key === undefined) throw new GatewayError('key_not_found');
    return sendJson(res, 200, keyJson(key));
  }
  if (method === 'PUT' || method === 'POST') {
    const body = await readJsonObject(req, res);
    if (!body.ok) {
      if (!body.answered) throw body.error;
      return;
    }
    const status = field.boolean(body.body, 'Status');
    const newGroup = group(body.body);
    if (status === undefined && newGroup === undefined)
      throw new GatewayError('invalid_value', 'Status (true or false) or Group is required.', 'Status');
    // One change, one write, one announcement, whichever of the two it carries.
    const key = await pool.update(id, { enabled: status, group: newGroup });
    if (key === undefined) throw new GatewayError('key_not_found');
    return sendJson(res, 200, { Action: 'update', Key: keyJson(key) });
  }
  if (method === 'DELETE') {
    if (!(await pool.remove(id))) throw new GatewayError('key_not_found');
    return sendJson(res, 200, { Action: 'delete', ID: id });
  }
  throw new GatewayError('method_not_allowed');
}

/**
 * `Group`: the upstream organisation a key belongs to (`null` or `""` removes it). Objects created
 * with a key may then be served by any key of its group.
 */
function group(body: Record<string, unknown>): string | null | undefined {
  if (body['Group'] === null) return null;
  const g = field.string(body, 'Group', { min: 0, max: 64 });
  if (g === undefined || g === '') return g === '' ? null : undefined;
  if (!/^[A-Za-z0-9_.:-]+$/.test(g))
    throw new GatewayError(
      'invalid_value',
      'Group may contain letters, digits, "_", "-", "." and ":".',
      'Group',
    );
  return g;
}

function keyView(k: KeyView, iso: TimeFormat): Record<string, unknown> {
  return {
    ID: k.id,
    Key: k.masked,
    Group: k.group,
    Status: k.status,
    Reason: k.reason,
    Until: k.until === null ? null : iso(k.until),
    LastError: k.lastError,
    Requests: k.requests,
    Failures: k.failures,
    CreatedAt: iso(k.createdAt),
    UpdatedAt: iso(k.updatedAt),
  };
}
