/** /x-users and /x-dna — the sub-account API (placeholder until implemented). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Account } from '../accounts/account.js';
import { GatewayError } from '../errors/catalogue.js';
import type { UsersDeps } from './users-deps.js';

export type { UsersDeps } from './users-deps.js';

export function handleUsers(
  _deps: UsersDeps,
  _caller: Account,
  _req: IncomingMessage,
  _res: ServerResponse,
  _kind: 'x-users' | 'x-dna',
  _ident: string,
  _url: string,
): Promise<void> {
  return Promise.reject(new GatewayError('not_found'));
}
