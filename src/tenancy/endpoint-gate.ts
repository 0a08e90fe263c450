/**
 * The first tenancy step of a /v1 request: which route of the endpoint table it is, and whether
 * this account may use it at all. Refused families answer 403 `endpoint_not_allowed` unless the
 * operator opened them (ENDPOINTS_ENABLED for everyone, AllowEndpoints per account); `never`
 * routes and, by default, paths the table does not know are refused outright.
 */
import type { Account } from '../accounts/account.js';
import { GatewayError } from '../errors/catalogue.js';
import type { EnableableFamily } from './families.js';
import { classify, type Classified } from './classify.js';
import { FAMILIES, isEnabled } from './endpoint-policy.js';

export interface EndpointOptions {
  readonly unknownEndpoints: 'refuse' | 'forward';
  readonly endpointsEnabled: readonly EnableableFamily[];
}

export type EndpointDecision =
  /** `classified` is undefined for a path outside the table forwarded by UNKNOWN_ENDPOINTS=forward. */
  | { readonly ok: true; readonly classified: Classified | undefined }
  | { readonly ok: false; readonly error: GatewayError };

/**
 * The gate of the composition root. Decisions that depend on neither the account nor an object id
 * (a fixed path of a metered or free route: the chat request) are remembered, so the hot path
 * neither splits the path nor allocates a decision.
 */
export class EndpointGate {
  private readonly fixed = new Map<string, Map<string, EndpointDecision>>();
  private size = 0;

  constructor(
    private readonly opts: EndpointOptions,
    private readonly maxRemembered = 1_000,
  ) {}

  decide(method: string, pathname: string, account: Account): EndpointDecision {
    const hit = this.fixed.get(method)?.get(pathname);
    if (hit !== undefined) return hit;
    const d = decideEndpoint(method, pathname, account, this.opts);
    const route = d.ok ? d.classified?.route : undefined;
    // A refused family opened for one account must not be remembered as open for the others.
    if (d.ok && route !== undefined && route.policy !== 'refused' && d.classified?.pathObjects.length === 0) {
      if (this.size >= this.maxRemembered) {
        this.fixed.clear();
        this.size = 0;
      }
      let byPath = this.fixed.get(method);
      if (byPath === undefined) this.fixed.set(method, (byPath = new Map()));
      byPath.set(pathname, d);
      this.size++;
    }
    return d;
  }
}

export function decideEndpoint(
  method: string,
  pathname: string,
  account: Account,
  opts: EndpointOptions,
): EndpointDecision {
  const classified = classify(method, pathname);
  if (
    classified !== undefined &&
    classified.route.policy !== 'never' &&
    classified.route.policy !== 'refused'
  )
    return { ok: true, classified };
  const what = `${method} ${pathname.slice(0, 200)}`;
  if (classified === undefined) {
    if (opts.unknownEndpoints === 'forward') return { ok: true, classified: undefined };
    return refuse(`${what} is not an endpoint this gateway knows, so it is not forwarded.`);
  }
  const family = FAMILIES[classified.family];
  switch (classified.route.policy) {
    case 'never':
      return refuse(`${what} is not forwarded by this gateway: ${family.note}`);
    case 'refused':
      if (isEnabled(classified.family, opts.endpointsEnabled, account.allowEndpoints))
        return { ok: true, classified };
      return refuse(
        `${what} is not enabled for this key. ${family.note} An operator can open "${classified.family}" for an account (AllowEndpoints) or for everyone (ENDPOINTS_ENABLED).`,
      );
    default:
      return { ok: true, classified };
  }
}

function refuse(message: string): EndpointDecision {
  return { ok: false, error: new GatewayError('endpoint_not_allowed', message) };
}
