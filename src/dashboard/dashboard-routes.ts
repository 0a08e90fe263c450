/** /dashboard/* and /v1/dashboard/billing/* read models (placeholder until implemented). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Account } from '../accounts/account.js';
import type { UsersDeps } from '../admin/users-deps.js';
import { GatewayError } from '../errors/catalogue.js';

export function handleDashboard(
  _deps: UsersDeps,
  _caller: Account,
  _req: IncomingMessage,
  _res: ServerResponse,
  _pathname: string,
  _url: string,
): Promise<void> {
  return Promise.reject(new GatewayError('not_found'));
}
