/**
 * /x-users and /x-dna — the sub-account API (spec §3.3–3.7). This file only routes, parses and
 * serialises; the rules live in `accounts/account-service.ts` and `accounts/account-update.ts`.
 *
 * Every mutating call runs its checks and memory changes synchronously after the body is read (no
 * await in between, so concurrent calls cannot race past a balance), then waits for the state
 * writer's flush, so an answered admin change is durable.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Account } from '../accounts/account.js';
import {
  chargeListingFee,
  checkApiAccess,
  createChild,
  inScope,
  removeChild,
  resolveTarget,
  uniquenessProblem,
  type Scope,
} from '../accounts/account-service.js';
import { localDirectory } from '../accounts/account-unit.js';
import { updateAccount } from '../accounts/account-update.js';
import { notifyNewKey } from '../accounts/notifications.js';
import { GatewayError } from '../errors/catalogue.js';
import { sendJson } from '../http/send-json.js';
import { orUnavailable } from '../store/or-unavailable.js';
import { readJsonObject, type JsonObject } from './json-body.js';
import {
  createdJson,
  deletedJson,
  updatedJson,
  userJson,
  warningHeaders,
  withWarnings,
} from './user-json.js';
import { parseCreate, parseUpdate } from './users-input.js';
import type { UsersDeps } from './users-deps.js';

export type { UsersDeps } from './users-deps.js';

/** Rows per page: the default is the maximum, so a client unaware of paging gets everything it can. */
export const MAX_PAGE_SIZE = 1000;

export async function handleUsers(
  deps: UsersDeps,
  caller: Account,
  req: IncomingMessage,
  res: ServerResponse,
  kind: 'x-users' | 'x-dna',
  ident: string,
  url: string,
): Promise<void> {
  const method = req.method ?? 'GET';
  const allowed = kind === 'x-dna' ? ['GET'] : ident === '' ? ['GET', 'POST'] : ['GET', 'PUT', 'DELETE'];
  if (!allowed.includes(method)) {
    throw new GatewayError(
      'method_not_allowed',
      `${method} is not allowed on /${kind}${ident === '' ? '' : '/{ident}'}.`,
      null,
      {
        allow: allowed.join(', '),
      },
    );
  }
  const denied = checkApiAccess(deps, caller, deps.clock());
  if (denied !== undefined) throw denied.error;
  const query = new URL(url, 'http://localhost').searchParams;
  // Accounts are looked up in the store (names, the tree, accounts not in memory): a store that
  // cannot be read answers 503, as the change itself does.
  return orUnavailable(
    async () => {
      if (method === 'GET')
        return read(deps, caller, res, kind === 'x-dna' ? 'descendant' : 'child', ident, query);
      if (method === 'DELETE') return remove(deps, caller, res, ident);
      const body = await readBody(req, res);
      if (body === undefined) return;
      if (method === 'POST') return create(deps, caller, res, body);
      return update(deps, caller, res, ident, body);
    },
    deps.log,
    'sub-account API',
  );
}

async function readBody(req: IncomingMessage, res: ServerResponse): Promise<JsonObject | undefined> {
  const body = await readJsonObject(req, res);
  if (body.ok) return body.body;
  if (!body.answered) throw body.error;
  return undefined;
}

/**
 * A quick answer when a name or e-mail is taken (the change checks again, under its lock: on one
 * process after everything queued is written, on several under the store's advisory lock).
 */
async function checkUnique(
  deps: UsersDeps,
  wanted: { name?: string; email?: string },
  self?: Account,
): Promise<void> {
  const holders = await deps.accounts.holders(
    wanted.name === undefined ? [] : [wanted.name],
    wanted.email === undefined ? [] : [wanted.email],
  );
  const taken = uniquenessProblem(localDirectory(deps.registry, holders), wanted, self);
  if (taken !== undefined) throw taken.error;
}

async function create(
  deps: UsersDeps,
  caller: Account,
  res: ServerResponse,
  body: JsonObject,
): Promise<void> {
  const { input, warnings } = parseCreate(body);
  await checkUnique(deps, input);
  const now = deps.clock();
  const plan = { touch: [caller.id], names: [input.name], emails: [input.email], money: true, create: true };
  const r = await deps.unit.run(plan, (view) => {
    const me = view.account(caller.id);
    if (me === undefined) return gone(caller);
    const made = createChild({ ...deps, registry: view.registry, writer: view.writes }, me, input, now);
    return made.ok ? { ...made, me } : made;
  });
  if (!r.ok) throw r.error;
  notifyNewKey(deps.mailer, r.child, r.key, deps.config.serviceName, deps.log);
  const json = createdJson(r.me, r.child, r.key, deps.clock(), iso(deps));
  sendJson(res, 200, withWarnings(json, warnings), warningHeaders(warnings));
}

async function update(
  deps: UsersDeps,
  caller: Account,
  res: ServerResponse,
  ident: string,
  body: JsonObject,
): Promise<void> {
  const { input, warnings } = parseUpdate(body);
  const now = deps.clock();
  const t = await resolveTarget(deps.accounts, caller, ident, 'update');
  if (!t.ok) throw t.error;
  // On itself an account may not rename itself at all: the change answers that (403), not this.
  if (t.target !== caller) await checkUnique(deps, input, t.target);
  const plan = {
    // New Rates are checked against the parent's: it is read (and, on several instances, locked) too.
    touch: [
      caller.id,
      t.target.id,
      ...(input.rates === undefined || t.target.parentId === null ? [] : [t.target.parentId]),
    ],
    names: input.name === undefined ? [] : [input.name],
    emails: input.email === undefined ? [] : [input.email],
    money: input.creditGranted !== undefined || input.rates !== undefined,
  };
  const r = await deps.unit.run(plan, (view) => {
    const me = view.account(caller.id);
    const target = view.account(t.target.id);
    if (me === undefined) return gone(caller);
    if (target === undefined) return gone(t.target);
    const changed = updateAccount(
      { ...deps, registry: view.registry, writer: view.writes },
      me,
      target,
      input,
      now,
    );
    return changed.ok ? { ...changed, me, target } : changed;
  });
  if (!r.ok) throw r.error;
  const all = [...warnings, ...r.warnings];
  const json = updatedJson(r.me, r.target, r.changed, deps.clock(), iso(deps));
  sendJson(res, 200, withWarnings(json, all), warningHeaders(all));
}

async function remove(deps: UsersDeps, caller: Account, res: ServerResponse, ident: string): Promise<void> {
  const now = deps.clock();
  const t = await resolveTarget(deps.accounts, caller, ident, 'delete');
  if (!t.ok) throw t.error;
  const r = await deps.unit.run({ touch: [caller.id, t.target.id], money: true }, (view) => {
    const me = view.account(caller.id);
    const target = view.account(t.target.id);
    if (me === undefined) return gone(caller);
    if (target === undefined) return gone(t.target);
    // The cards as they were: the answer shows what the child held when it was deleted.
    const cards = target.cards;
    const removed = removeChild({ ...deps, registry: view.registry, writer: view.writes }, me, target, now);
    return removed.ok ? { ...removed, me, target, cards } : removed;
  });
  if (!r.ok) throw r.error;
  sendJson(res, 200, deletedJson(r.me, r.target, r.cards, deps.clock(), iso(deps)));
}

/** How this gateway writes times: with the offset of its TZ. */
function iso(deps: UsersDeps): (ms: number) => string {
  return (ms) => deps.calendar.iso(ms);
}

/**
 * One account by path ident or `?id=`/`?name=`/`?email=` (as a one-element array), or a page of
 * the listing, newest first.
 */
async function read(
  deps: UsersDeps,
  caller: Account,
  res: ServerResponse,
  scope: Scope,
  ident: string,
  query: URLSearchParams,
): Promise<void> {
  const lookup = await findOne(deps, ident, query);
  if (lookup.specific) {
    const a = lookup.account;
    if (a === undefined || a === caller || !(await inScope(deps.accounts, caller, a, scope))) {
      throw new GatewayError(
        'account_not_found',
        scope === 'child'
          ? 'No such sub-account among your direct children.'
          : 'No such account among your descendants.',
      );
    }
    await deps.fresh([a]);
    // A one-element array, as the original answers a single lookup (its scripts read `[0]`).
    return sendJson(res, 200, [userJson(a, deps.clock(), deps.calendar)]);
  }
  const { page, size } = paging(query);
  const now = deps.clock();
  if (scope === 'child' && !caller.isRoot) {
    const fee = await deps.unit.run({ touch: [caller.id], money: true }, (view) => {
      const me = view.account(caller.id);
      if (me === undefined) return gone(caller);
      return chargeListingFee({ ...deps, registry: view.registry, writer: view.writes }, me, now) ?? PAID;
    });
    if (!fee.ok) throw fee.error;
  }
  // Newest first, as the original lists them (ids grow with creation); only the page is read.
  const { ids, total } = await deps.accounts.subtreePage(caller, scope, (page - 1) * size, size);
  const rows = await deps.accounts.show(ids);
  // On several instances the balances shown are read from the store, not this instance's view.
  await deps.fresh(rows);
  sendJson(
    res,
    200,
    rows.map((a) => userJson(a, now, deps.calendar)),
    {
      'x-total-count': String(total),
      'x-page': String(page),
      'x-per-page': String(size),
      'x-total-pages': String(Math.ceil(total / size)),
    },
  );
}

async function findOne(
  deps: UsersDeps,
  ident: string,
  query: URLSearchParams,
): Promise<{ specific: false } | { specific: true; account: Account | undefined }> {
  if (ident !== '') return { specific: true, account: await deps.accounts.resolve(ident) };
  const id = query.get('id') ?? '';
  const name = query.get('name') ?? '';
  const email = query.get('email') ?? '';
  if (id === '' && name === '' && email === '') return { specific: false };
  if (id !== '' && !/^\d{1,15}$/.test(id))
    throw new GatewayError('invalid_value', 'id must be a number.', 'id');
  const found = [
    id === '' ? null : await deps.accounts.byId(Number(id)),
    name === '' ? null : await deps.accounts.byName(name),
    email === '' ? null : await deps.accounts.byEmail(email),
  ].filter((a) => a !== null);
  // Several selectors must all name the same account.
  const first = found[0];
  return { specific: true, account: found.every((a) => a === first) ? first : undefined };
}

function paging(query: URLSearchParams): { page: number; size: number } {
  const int = (key: string, fallback: number, max: number): number => {
    const raw = query.get(key);
    if (raw === null || raw === '') return fallback;
    if (!/^\d{1,9}$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
      throw new GatewayError('invalid_value', `${key} must be a whole number from 1 to ${max}.`, key);
    }
    return Number(raw);
  };
  return { page: int('page', 1, 1_000_000_000), size: int('size', MAX_PAGE_SIZE, MAX_PAGE_SIZE) };
}

const PAID = { ok: true } as const;

/** The account vanished while the change waited (deleted through another instance). */
function gone(account: Account): { ok: false; error: GatewayError } {
  return { ok: false, error: new GatewayError('account_not_found', `No account "${account.name}".`) };
}
