/**
 * /x-keys — the upstream key pool, root only. Beyond the original (add only, effective after a
 * reload): a key added here serves the very next request, and keys can be listed (masked),
 * enabled, disabled and deleted.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import type { KeyPool, KeyView } from '../keys/key-pool.js';
import { readJsonObject, field } from './json-body.js';
import { sendJson } from '../http/send-json.js';

export async function handleKeys(
  pool: KeyPool,
  req: IncomingMessage,
  res: ServerResponse,
  rest: string,
): Promise<void> {
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
      const added = await pool.add(secret);
      if (!added.ok)
        throw new GatewayError('duplicate', 'This upstream key is already in the pool.', 'SecretKey');
      return sendJson(res, 200, { Action: 'add', Key: keyJson(added.key) });
    }
    throw new GatewayError('method_not_allowed');
  }
  if (!/^\d{1,15}$/.test(rest)) throw new GatewayError('not_found', 'Unknown upstream key route.');
  const id = Number(rest);
  if (method === 'GET') {
    const key = pool.get(id);
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
    if (status === undefined)
      throw new GatewayError('invalid_value', 'Status (true or false) is required.', 'Status');
    const key = await pool.setEnabled(id, status);
    if (key === undefined) throw new GatewayError('key_not_found');
    return sendJson(res, 200, { Action: 'update', Key: keyJson(key) });
  }
  if (method === 'DELETE') {
    if (!(await pool.remove(id))) throw new GatewayError('key_not_found');
    return sendJson(res, 200, { Action: 'delete', ID: id });
  }
  throw new GatewayError('method_not_allowed');
}

function keyJson(k: KeyView): Record<string, unknown> {
  return {
    ID: k.id,
    Key: k.masked,
    Status: k.status,
    Reason: k.reason,
    Until: k.until === null ? null : new Date(k.until).toISOString(),
    LastError: k.lastError,
    Requests: k.requests,
    Failures: k.failures,
    CreatedAt: new Date(k.createdAt).toISOString(),
    UpdatedAt: new Date(k.updatedAt).toISOString(),
  };
}
