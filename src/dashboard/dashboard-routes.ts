/**
 * /dashboard/* read models of the caller's OWN account (spec §3.8, §3.9), also served under /v1
 * (the server strips the prefix, so paths arrive here as /dashboard/…):
 *   GET /dashboard/x_user/info                 → balance page summary (user-info.ts)
 *   GET /dashboard/billing/usage?start_date&end_date → OpenAI legacy daily costs (billing-usage.ts)
 *   GET /dashboard/billing/subscription        → OpenAI legacy limits (subscription.ts)
 *   GET /dashboard/billing/credit_grants       → OpenAI legacy credit grants (subscription.ts)
 * Other methods on these paths answer 405 (with `Allow: GET`), other paths 404. Answers are fresh
 * to the request: memory for balances and windows (on several instances, reloaded from the store
 * first), and a write-batch flush before reading usage rows.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Account } from '../accounts/account.js';
import type { UsersDeps } from '../admin/users-deps.js';
import { GatewayError } from '../errors/catalogue.js';
import { orUnavailable } from '../store/or-unavailable.js';
import { sendJson } from '../http/send-json.js';
import { billingUsage, parseDateRange } from './billing-usage.js';
import { billingSubscription, creditGrants } from './subscription.js';
import { userInfo } from './user-info.js';

type Route = (deps: UsersDeps, caller: Account, url: string) => Promise<unknown>;

/** Read-only answers must not be cached by browsers or proxies: balances change per request. */
const NO_STORE = { 'cache-control': 'no-store' };

const ROUTES: ReadonlyMap<string, Route> = new Map<string, Route>([
  [
    '/dashboard/x_user/info',
    async (deps, caller) => {
      await deps.fresh([caller]);
      const now = deps.clock();
      deps.meter.rollWindows(caller, now);
      return userInfo(caller, now, deps.calendar);
    },
  ],
  [
    '/dashboard/billing/usage',
    async (deps, caller, url) => {
      const range = parseDateRange(queryOf(url));
      // Requests settled but still waiting in the write batch must be in the answer.
      return orUnavailable(
        async () => {
          await deps.writer.flush();
          return billingUsage(deps.db, deps.calendar, caller.id, range);
        },
        deps.log,
        'usage report',
      );
    },
  ],
  [
    '/dashboard/billing/subscription',
    async (deps, caller) => {
      await deps.fresh([caller]);
      const now = deps.clock();
      deps.meter.rollWindows(caller, now);
      return billingSubscription(caller, now);
    },
  ],
  [
    '/dashboard/billing/credit_grants',
    async (deps, caller) => {
      await deps.fresh([caller]);
      return creditGrants(caller, deps.clock());
    },
  ],
]);

function queryOf(url: string): URLSearchParams {
  const q = url.indexOf('?');
  return new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
}

export async function handleDashboard(
  deps: UsersDeps,
  caller: Account,
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
  url: string,
): Promise<void> {
  const route = ROUTES.get(pathname);
  if (route === undefined) {
    throw new GatewayError('not_found', `Unknown route: ${req.method ?? 'GET'} ${pathname.slice(0, 200)}`);
  }
  if (req.method !== 'GET') {
    throw new GatewayError('method_not_allowed', `Only GET is allowed on ${pathname}.`, null, {
      allow: 'GET',
    });
  }
  sendJson(res, 200, await route(deps, caller, url), NO_STORE);
}
