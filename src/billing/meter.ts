/**
 * Admission and settlement of proxied requests — the money path. `admit` runs every gate of an
 * account (IP, model, balance ≥ $1, monthly HardLimit, worst-case reservation, RPM) synchronously
 * on in-memory state, so concurrent requests cannot race past a balance; a prompt is bounded by
 * its bytes, and counted with the tokenizer only before a refusal for money (`recount`). `settle`
 * turns what was actually delivered into an exact charge, releases the reservation and queues the
 * usage record, ledger row and new balances for the next batched write. Each ticket settles
 * exactly once.
 *
 * Kept in one file although long: admission, reservation, settlement and replay all change the
 * same in-memory money of an account, and their order of checks is the money rule; reading them
 * side by side is what keeps it exact. Pricing, bounds and purses live in their own files.
 */
import { GatewayError } from '../errors/catalogue.js';
import type { Account } from '../accounts/account.js';
import type { Limiter, RateDecision } from '../accounts/rate-limiter.js';
import { CardPurse, type Purse, type Shortfall } from './purse.js';
import type { StateWriter } from '../store/state-writer.js';
import type { Calendar } from './calendar.js';
import { computeCost, worstCaseCost, type Usage, type WorstCaseExtras } from './cost.js';
import { ratesAtPercent, type Micros } from './money.js';
import { DEFAULT_PRICE_MODEL, type ModelPrice, type PriceTable } from './price-table.js';
import { countTextTokens, estimatePromptTokens, maxOutputTokens } from './token-count.js';
import { exactPromptBound, type PromptCounter } from './exact-prompt.js';
import { promptBound, requestExtras } from './request-bounds.js';
import type { ParsedRequest } from '../proxy/parse-request.js';
import { GATE_REFUSAL, NO_LOG_DETAIL, type UsageRow } from '../store/batch-sink.js';
import type { SettlementEntry } from '../journal/settlement-entry.js';
import type { SettlementLog } from '../journal/settlement-journal.js';

/** Top-ups one admission may ask for while other requests take what each brought (see afterTopUp). */
const TOP_UP_ATTEMPTS = 4;

/**
 * Reservations in flight one `tighten` may count exactly: with its own, an admission counts at most
 * five prompts, each at most a few milliseconds (exact-prompt.ts), a bound on the time it holds the
 * loop; the others wait for the next refusal.
 */
const TIGHTEN_AT_ONCE = 2;

/** Calls are refused below this balance (the original's $1 rule). */
export const MIN_CALL_BALANCE: Micros = 1_000_000;

export interface Ticket {
  readonly requestId: string;
  readonly account: Account;
  readonly path: string;
  readonly model: string;
  readonly price: ModelPrice | undefined;
  /** The parsed request, kept so the tokenizer runs only when upstream sends no usage. */
  readonly json: Record<string, unknown> | undefined;
  readonly extras: WorstCaseExtras;
  /** Lowered once, while in flight, if the account runs short and its prompt is counted (`tighten`). */
  reserved: Micros;
  /** Percent of the listed prices billed: 100, or the price table's `batch_percent` for batches. */
  readonly pricePercent: number;
  /** For the request log: whether the answer streams, and where the request came from. */
  readonly stream: boolean;
  readonly clientIp: string | null;
  settled: boolean;
  /** Its link in the account's list of requests whose prompt is bounded by bytes (the Meter's own). */
  loose?: LooseLink | undefined;
}

/**
 * A ticket in its account's list of admitted requests whose reservation bounds the prompt by bytes
 * (`tighten` lowers them). An intrusive list: a Map of tickets per account, set and deleted on every
 * request, reallocated its table all the time and kept each request's objects alive into the old
 * generation (twice the garbage-collection time under load).
 */
export interface LooseLink {
  readonly ticket: Ticket;
  readonly r: Pending;
  prev: LooseLink | undefined;
  next: LooseLink | undefined;
}

interface LooseList {
  head: LooseLink | undefined;
}

/** How long one exchange took (request log); absent for work that is not one exchange. */
export interface Timing {
  readonly latencyMs: number;
  /** To the first byte of the answer's body; null when none was sent. */
  readonly ttfbMs: number | null;
}

/** A request refused after its key was known, for the request log (no money moves). */
export interface Refusal {
  readonly requestId: string;
  readonly path: string;
  readonly model: string;
  readonly stream: boolean;
  readonly clientIp: string;
  readonly error: GatewayError;
  readonly latencyMs: number;
}

/** One model's metered usage in work billed when it is done (a batch has one per model). */
export interface DonePart {
  readonly model: string;
  readonly price: ModelPrice;
  readonly usage: Usage;
}

export type RequestEnd =
  /** An upstream response was relayed (fully or partly). */
  | {
      readonly kind: 'relayed';
      readonly status: number;
      readonly end: 'completed' | 'client-gone' | 'upstream-error';
      readonly usage: Usage | undefined;
      readonly deliveredText: string;
      readonly attempts: number;
    }
  /** No upstream response reached the client (gateway or upstream failure, or the client left). */
  | {
      readonly kind: 'failed';
      readonly status: number;
      /** 'refused': the gateway answered an error of its own after admission (`errorCode`). */
      readonly outcome: 'upstream-error' | 'client-gone' | 'refused';
      readonly attempts: number;
      readonly errorCode?: string;
    }
  /**
   * Work the gateway followed until upstream finished it (a batch, a background response):
   * billed from upstream's usage, one part per model.
   */
  | {
      readonly kind: 'done';
      readonly status: number;
      readonly outcome: 'completed' | 'failed' | 'cancelled' | 'expired' | 'incomplete';
      readonly parts: readonly DonePart[];
      readonly attempts: number;
    };

/** A reservation for work that is not one HTTP exchange (a realtime response, a batch). */
export interface ReserveSpec {
  readonly requestId: string;
  readonly path: string;
  readonly model: string;
  readonly price: ModelPrice | undefined;
  readonly reserve: Micros;
  /** Percent of the listed prices billed (batches: the price table's `batch_percent`). */
  readonly pricePercent?: number;
  /** Where the work came from (request log). */
  readonly clientIp?: string;
}

/** What `admit` priced before the money gates: the reservation, or why there is none. */
type Priced =
  | { readonly kind: 'unpriced'; readonly model: string }
  | { readonly kind: 'free' }
  | {
      readonly kind: 'priced';
      readonly reserve: Micros;
      readonly price?: ModelPrice;
      readonly extras?: WorstCaseExtras;
      /** The worst case's terms while its prompt is the cheap bound, which `recount` may count. */
      readonly cheap?: { readonly prompt: number; readonly maxOut: number } | undefined;
    };

type MoneyShort = { error: GatewayError; topUp: Micros | undefined };

const UNPRICED: Priced = { kind: 'free' };

/** A request past its first gates, waiting for the rate limiter or more credit. */
export interface Pending {
  readonly path: string;
  readonly req: ParsedRequest;
  readonly model: string;
  readonly requestId: string;
  readonly ip: string;
  readonly priced: Priced;
}

/** The writes a settlement queues (the state writer, or its cluster counterpart). */
export type SettlementWriter = Pick<StateWriter, 'markDirty' | 'addLedger' | 'addUsage' | 'backlogged'>;

export type Admission =
  | { readonly ok: true; readonly ticket: Ticket; readonly headers: Record<string, string> }
  | { readonly ok: false; readonly error: GatewayError };

export interface SoftLimitListener {
  (account: Account): void;
}

export class Meter {
  private readonly purse: Purse;
  private readonly countPrompt: PromptCounter;
  /** Per account, the admitted requests in flight whose reservation bounds the prompt by bytes. */
  private readonly loose = new WeakMap<Account, LooseList>();

  constructor(
    private readonly prices: PriceTable,
    private readonly calendar: Calendar,
    private readonly limiter: Limiter,
    private readonly writer: SettlementWriter,
    private readonly opts: {
      readonly maxOutputTokensCap: number;
      readonly purse?: Purse;
      /** Where every settlement is also recorded until the writer has it in the store. */
      readonly journal?: SettlementLog | undefined;
      /** Counts a prompt exactly before a refusal for money (default: exact-prompt.ts). */
      readonly exactPrompt?: PromptCounter;
    },
    private readonly onSoftLimit: SoftLimitListener = () => undefined,
    private readonly clock: () => number = Date.now,
  ) {
    this.purse = opts.purse ?? new CardPurse();
    this.countPrompt = opts.exactPrompt ?? exactPromptBound;
  }

  /**
   * Runs every gate of `account` for one request and reserves its worst case. `metered` is false
   * for endpoints whose answer is never billed (reads, object management, token counting): their
   * model is still checked against the account's list, but not priced.
   *
   * Synchronous on one process (checks and reservation in one step, so concurrent requests cannot
   * race past a balance). On several instances it may wait: for more credit when the instance's
   * lease is short, or for the cluster's rate limiter; the money is then checked again right
   * before the reservation, in one synchronous step.
   */
  admit(
    account: Account,
    path: string,
    req: ParsedRequest,
    ip: string,
    requestId: string,
    metered = true,
  ): Admission | Promise<Admission> {
    const now = this.clock();
    if (account.ipMatcher !== null && !account.ipMatcher.matches(ip)) return refuse('ip_not_allowed');
    const model = req.model ?? '';
    if (account.allowModels !== null && model !== '' && !account.allowModels.has(model)) {
      return refuse('model_not_allowed', `This key may not use the model "${model}".`);
    }
    this.rollWindows(account, now);
    const priced = this.price(account, path, req, model, metered);
    // The store has been away long enough that unwritten settlements reached their bound: serve
    // nothing more that would add to them until it is back.
    if (priced.kind !== 'free' && this.writer.backlogged()) return refuse('store_unavailable');
    const short = this.moneyRefusal(account, priced, now);
    const pending: Pending = { path, req, model, requestId, ip, priced };
    if (short === undefined) return this.limit(account, pending);
    if (short.topUp !== undefined) return this.afterTopUp(account, pending, short.topUp);
    const exact = this.recount(account, pending, short, now);
    return exact.short === undefined ? this.limit(account, exact.r) : { ok: false, error: exact.short.error };
  }

  /**
   * Asks the purse for credit, then admits. Several instances: a burst may reserve what was
   * leased for this request before it runs again; unless the purse named a limit, it asks again
   * (a few times), as one process would admit what its balance covers.
   */
  private async afterTopUp(account: Account, r: Pending, want: Micros): Promise<Admission> {
    for (let attempt = 1; ; attempt++) {
      const shortfall = await this.purse.topUp(account, want);
      const again = this.moneyRefusal(account, r.priced, this.clock());
      if (again === undefined) return this.limit(account, r);
      if (shortfall !== undefined || again.topUp === undefined || attempt >= TOP_UP_ATTEMPTS) {
        const exact = this.recount(account, r, again, this.clock());
        if (exact.short === undefined) return this.limit(account, exact.r);
        return { ok: false, error: shortfallError(exact.short.error, shortfall) };
      }
      want = again.topUp;
    }
  }

  /**
   * Reserves `reserve` for work that is not one HTTP exchange: one realtime response, or a batch
   * from its creation until it ends. Balance and HardLimit are checked as in `admit`; the IP,
   * model and RPM gates were passed by the session or the request that started the work. Only
   * the credit already available here counts (see `reserveAfterTopUp`).
   */
  reserve(
    account: Account,
    spec: ReserveSpec,
  ): { ok: true; ticket: Ticket } | { ok: false; error: GatewayError } {
    const now = this.clock();
    this.rollWindows(account, now);
    const short = this.moneyRefusal(account, { kind: 'priced', reserve: spec.reserve }, now);
    if (short !== undefined) return { ok: false, error: short.error };
    return { ok: true, ticket: this.hold(account, spec) };
  }

  /** `reserve`, first asking the purse for more credit when it would not fit (a batch's worst case). */
  async reserveAfterTopUp(
    account: Account,
    spec: ReserveSpec,
  ): Promise<{ ok: true; ticket: Ticket } | { ok: false; error: GatewayError }> {
    const short = this.moneyRefusal(account, { kind: 'priced', reserve: spec.reserve }, this.clock());
    if (short?.topUp === undefined) return this.reserve(account, spec);
    const shortfall = await this.purse.topUp(account, short.topUp);
    const r = this.reserve(account, spec);
    return r.ok ? r : { ok: false, error: shortfallError(r.error, shortfall) };
  }

  /** The model's price and the request's worst case, or the refusal of an unpriced model. */
  private price(account: Account, path: string, req: ParsedRequest, model: string, metered: boolean): Priced {
    if (model === '' || !metered) return UNPRICED;
    const price = this.prices.lookup(model);
    if (price === undefined) return { kind: 'unpriced', model };
    const extras = requestExtras(path, req);
    const maxOut = req.json === undefined ? 0 : maxOutputTokens(req.json, this.opts.maxOutputTokensCap);
    const prompt = promptBound(path, req);
    const reserve = worstCaseCost(price, prompt, maxOut, account.rates, extras);
    // A default price stands for a model of unknown encoding: its prompt is never counted.
    const cheap = price.model === DEFAULT_PRICE_MODEL ? undefined : { prompt, maxOut };
    return { kind: 'priced', price, extras, reserve, cheap };
  }

  /**
   * The last word before a refusal for money. Reservations that bound a prompt by its bytes, of
   * the account's requests in flight (`tighten`) and of this one, are counted exactly, and only
   * what still does not fit is refused: nothing is tokenized while the cheap bound fits. The
   * counts, the check and the caller's reservation are one synchronous step.
   */
  private recount(
    account: Account,
    r: Pending,
    short: MoneyShort,
    now: number,
  ): { r: Pending; short: MoneyShort | undefined } {
    const name = short.error.errorName;
    if (name !== 'insufficient_balance' && name !== 'hard_limit_reached') return { r, short };
    const p = r.priced;
    let exact = r;
    if (p.kind === 'priced' && p.cheap !== undefined && p.price !== undefined) {
      // When even the output alone does not fit, no count of this prompt can help.
      const floor = worstCaseCost(p.price, 0, p.cheap.maxOut, account.rates, p.extras);
      if (!this.tighten(account, { ...p, reserve: floor }, now))
        return { r, short: this.moneyRefusal(account, p, now) };
      const reserve = this.exactReserve(account, r);
      if (reserve !== undefined) exact = { ...r, priced: { ...p, reserve, cheap: undefined } };
    }
    this.tighten(account, exact.priced, now);
    return { r: exact, short: this.moneyRefusal(account, exact.priced, now) };
  }

  /**
   * Lowers reservations of `account`'s requests in flight from the cheap bound to their exact worst
   * case, each once, until `priced` fits (what they over-reserve must not refuse it); at most
   * `TIGHTEN_AT_ONCE` of them, the others are left for the next refusal. Whether `priced` fits.
   */
  private tighten(account: Account, priced: Priced, now: number): boolean {
    const list = this.loose.get(account);
    let counted = 0;
    for (let at = list?.head; at !== undefined;) {
      if (counted++ === TIGHTEN_AT_ONCE || this.moneyRefusal(account, priced, now) === undefined) break;
      const { ticket, r, next } = at;
      unlink(list, ticket);
      at = next;
      // Never a settled ticket: `settle` and `letGo` take theirs out of the list.
      const reserve = this.exactReserve(account, r);
      if (reserve === undefined || reserve >= ticket.reserved) continue;
      account.reserved -= ticket.reserved - reserve;
      ticket.reserved = reserve;
    }
    return this.moneyRefusal(account, priced, now) === undefined;
  }

  /** The worst case of `r` with its prompt counted exactly; undefined when it is not counted. */
  private exactReserve(account: Account, r: Pending): Micros | undefined {
    const p = r.priced;
    if (p.kind !== 'priced' || p.cheap === undefined || p.price === undefined) return undefined;
    const prompt = this.countPrompt(r.path, r.req);
    if (prompt === undefined) return undefined;
    // Both are upper bounds; with images the counted one may be the larger.
    const tokens = Math.min(prompt, p.cheap.prompt);
    return worstCaseCost(p.price, tokens, p.cheap.maxOut, account.rates, p.extras);
  }

  /**
   * Why the account cannot pay for `priced` now, in the order the gates have always answered:
   * balance below $1, HardLimit reached, no price, worst case above the balance, above HardLimit.
   * `topUp` says how much credit must be available here to lift a balance refusal, when the purse
   * can get more.
   */
  private moneyRefusal(account: Account, priced: Priced, now: number): MoneyShort | undefined {
    if (account.isRoot) return priced.kind === 'unpriced' ? unpricedRefusal(priced.model) : undefined;
    const available = this.purse.available(account, now);
    const reserve = priced.kind === 'priced' ? priced.reserve : 0;
    // What must be reservable here in all (Purse.topUp takes the total, not the missing part).
    const topUp = (): Micros | undefined =>
      this.purse.canTopUp ? Math.max(MIN_CALL_BALANCE, reserve) : undefined;
    if (available < MIN_CALL_BALANCE)
      return { error: new GatewayError('insufficient_balance'), topUp: topUp() };
    if (account.month.cost >= account.hardLimit)
      return { error: new GatewayError('hard_limit_reached'), topUp: undefined };
    if (priced.kind === 'unpriced') return unpricedRefusal(priced.model);
    if (reserve > available) return { error: new GatewayError('insufficient_balance'), topUp: topUp() };
    if (account.month.cost + account.reserved + reserve > account.hardLimit)
      return { error: new GatewayError('hard_limit_reached'), topUp: undefined };
    return undefined;
  }

  /** The RPM gate, then the reservation (the money was checked just before, in the same step). */
  private limit(account: Account, r: Pending): Admission | Promise<Admission> {
    const rate = this.limiter.check(account.id, account.rateLimit, this.clock());
    if (rate instanceof Promise) {
      // Several instances: the money this request passed with is held while Redis decides, so
      // requests admitted meanwhile cannot reserve it away (the check and the reservation stay
      // one step); let go before the answer, which reserves it for good or refuses.
      const hold = r.priced.kind === 'priced' ? r.priced.reserve : 0;
      account.reserved += hold;
      return rate.then(
        (decided) => {
          account.reserved -= hold;
          return this.finish(account, r, decided);
        },
        () => {
          account.reserved -= hold;
          return { ok: false, error: new GatewayError('limiter_unavailable') };
        },
      );
    }
    return this.finish(account, r, rate);
  }

  private finish(account: Account, r: Pending, rate: RateDecision): Admission {
    const headers: Record<string, string> = {
      'x-ratelimit-limit-requests': String(rate.limit),
      'x-ratelimit-remaining-requests': String(rate.remaining),
      'x-ratelimit-reset-requests': `${(rate.resetMs / 1000).toFixed(3)}s`,
    };
    if (!rate.allowed) {
      return {
        ok: false,
        error: new GatewayError('rate_limited', undefined, null, {
          ...headers,
          'retry-after': String(Math.ceil(rate.retryAfterMs / 1000)),
          'retry-after-ms': String(rate.retryAfterMs),
        }),
      };
    }
    const priced = r.priced.kind === 'priced' ? r.priced : undefined;
    const reserve = priced?.reserve ?? 0;
    account.reserved += reserve;
    const ticket: Ticket = {
      requestId: r.requestId,
      account,
      path: r.path,
      model: r.model,
      price: priced?.price,
      json: r.req.json,
      extras: priced?.extras ?? {},
      reserved: reserve,
      pricePercent: 100,
      stream: r.req.stream,
      clientIp: r.ip,
      settled: false,
      loose: undefined,
    };
    // Its prompt is bounded by bytes: counted exactly if the account runs short (`tighten`).
    if (priced?.cheap !== undefined && !account.isRoot) {
      let list = this.loose.get(account);
      if (list === undefined) this.loose.set(account, (list = { head: undefined }));
      link(list, ticket, r);
    }
    return { ok: true, headers, ticket };
  }

  /**
   * Holds a reservation without any check: for work that was admitted before a restart (an open
   * batch) and must keep its money set aside, whatever the balance is now.
   */
  hold(account: Account, spec: ReserveSpec): Ticket {
    account.reserved += spec.reserve;
    return {
      requestId: spec.requestId,
      account,
      path: spec.path,
      model: spec.model,
      price: spec.price,
      json: undefined,
      extras: {},
      reserved: spec.reserve,
      pricePercent: spec.pricePercent ?? 100,
      stream: false,
      clientIp: spec.clientIp ?? null,
      settled: false,
      loose: undefined,
    };
  }

  /** True when more credit can appear by asking (several instances: leases). */
  get canTopUp(): boolean {
    return this.purse.canTopUp;
  }

  /**
   * Makes what the account's reservations hold, and `extra` more, spendable here when the purse
   * can get more credit (several instances: a lease for work taken over from an instance that
   * died, or for a realtime response larger than the lease). Best effort: what could not be
   * leased is absorbed at settlement, or refused at the next reservation.
   */
  async cover(account: Account, extra: Micros = 0): Promise<void> {
    if (!this.purse.canTopUp || account.isRoot) return;
    await this.purse.topUp(account, extra);
  }

  /**
   * Lets go of a ticket's reservation without a charge or a usage record (several instances: the
   * work it paid for was taken over by another instance, which bills it).
   */
  letGo(ticket: Ticket): void {
    if (ticket.settled) return;
    ticket.settled = true;
    ticket.account.reserved -= ticket.reserved;
    unlink(this.loose.get(ticket.account), ticket);
  }

  /**
   * Settles a ticket exactly once: charge what was delivered, release the rest, queue the writes
   * and record the settlement in the journal (see `durable`).
   */
  settle(ticket: Ticket, end: RequestEnd, timing?: Timing): Micros {
    if (ticket.settled) return 0;
    ticket.settled = true;
    const account = ticket.account;
    account.reserved -= ticket.reserved;
    unlink(this.loose.get(account), ticket);
    const now = this.clock();
    this.rollWindows(account, now);

    const rates = ratesAtPercent(account.rates, ticket.pricePercent);
    const outcome = end.kind === 'relayed' ? end.end : end.outcome;
    const rows: UsageRow[] = [];
    for (const line of this.measure(ticket, end)) {
      let cost =
        line.price === undefined || line.usage === undefined ? 0 : computeCost(line.price, line.usage, rates);
      // The balance never goes below zero: an underestimated prompt is absorbed, not owed.
      if (!account.isRoot && cost > 0) cost = this.purse.take(account, cost, now);
      rows.push({
        request_id: line.requestId,
        account_id: account.id,
        model: line.model,
        path: ticket.path,
        day: account.day.period,
        prompt_tokens: line.usage?.promptTokens ?? 0,
        cached_tokens: line.usage?.cachedTokens ?? 0,
        completion_tokens: line.usage?.completionTokens ?? 0,
        cost,
        status: end.status,
        outcome,
        attempts: end.attempts,
        usage_source: line.source,
        created_at: now,
        stream: ticket.stream ? 1 : 0,
        reasoning_tokens: line.usage?.reasoningTokens ?? 0,
        images: line.usage?.images ?? 0,
        audio_ms: Math.round((line.usage?.audioSeconds ?? 0) * 1000),
        characters: line.usage?.characters ?? 0,
        // The account's own Rates (a batch's discount is in its cost, not here).
        rates: account.rates,
        latency_ms: timing === undefined ? null : Math.round(timing.latencyMs),
        ttfb_ms: timing?.ttfbMs == null ? null : Math.round(timing.ttfbMs),
        client_ip: ticket.clientIp,
        error_code: end.kind === 'failed' ? (end.errorCode ?? null) : null,
      });
    }
    const total = this.book(account, rows, now);
    this.opts.journal?.append({ account: account.id, at: now, rows });
    if (
      !account.isRoot &&
      account.softLimit > 0 &&
      account.month.cost >= account.softLimit &&
      account.softNoticeMonth !== account.month.period
    ) {
      account.softNoticeMonth = account.month.period;
      this.onSoftLimit(account);
    }
    return total;
  }

  /**
   * Records a request refused after its key was known (balance, limits, rights, bad input) in the
   * request log: a usage row with outcome 'refused' and the error's code. No money moves, nothing
   * is journaled, and the daily totals do not count it.
   */
  logRefusal(account: Account, r: Refusal): void {
    const now = this.clock();
    this.writer.addUsage({
      request_id: r.requestId,
      account_id: account.id,
      model: r.model,
      path: r.path,
      day: this.calendar.periodOf(now).day,
      prompt_tokens: 0,
      cached_tokens: 0,
      completion_tokens: 0,
      cost: 0,
      status: r.error.status,
      outcome: 'refused',
      attempts: 0,
      usage_source: GATE_REFUSAL,
      created_at: now,
      ...NO_LOG_DETAIL,
      stream: r.stream ? 1 : 0,
      rates: account.rates,
      latency_ms: Math.round(r.latencyMs),
      client_ip: r.clientIp,
      error_code: r.error.code ?? r.error.errorName,
    });
  }

  /**
   * Resolves once every settlement so far is in the journal: the pipeline releases the last bytes
   * of an answer only then, so an answer a client holds whole is billed even if the process dies
   * the next instant. Resolved at once without a journal.
   */
  durable(): Promise<void> {
    return this.opts.journal?.written() ?? RESOLVED;
  }

  /**
   * Applies a settlement recovered from the journal after a crash (its usage rows were not in the
   * store), exactly as `settle` applied it: each row's cost taken from the cards as of the
   * settlement's instant (earliest expiry first), the counters and windows, a ledger row per
   * charged row, the usage rows. Nothing is priced again and nothing is reserved. Returns what was
   * charged: less than recorded only if the cards no longer hold it (never below zero).
   */
  replay(account: Account, entry: SettlementEntry): Micros {
    this.rollWindows(account, this.clock());
    const rows = entry.rows.map((row) => {
      if (account.isRoot || row.cost === 0) return row;
      const cost = this.purse.take(account, row.cost, entry.at);
      return cost === row.cost ? row : { ...row, cost };
    });
    return this.book(account, rows, entry.at);
  }

  /**
   * Books one settlement whose costs are taken already: the account's counters, its day and month
   * windows (when the settlement falls in them), a ledger row per charged usage row, the usage rows.
   */
  private book(account: Account, rows: readonly UsageRow[], at: number): Micros {
    let total = 0;
    for (const row of rows) total += row.cost;
    account.creditUsed += total;
    account.requests++;
    const day = rows[0]?.day;
    if (day === account.day.period) {
      account.day.cost += total;
      account.day.requests++;
    }
    if (day?.slice(0, 7) === account.month.period) {
      account.month.cost += total;
      account.month.requests++;
    }
    account.updatedAt = Math.max(account.updatedAt, at);
    this.writer.markDirty(account);
    for (const row of rows) {
      if (row.cost > 0 && !account.isRoot) {
        this.writer.addLedger({
          account_id: account.id,
          kind: 'usage',
          amount: -row.cost,
          request_id: row.request_id,
          note: row.model,
          created_at: at,
        });
      }
      this.writer.addUsage(row);
    }
    return total;
  }

  /** Starts new day / month windows when the calendar moved on. */
  rollWindows(account: Account, now: number): void {
    const p = this.calendar.periodOf(now);
    if (account.day.period !== p.day) account.day = { period: p.day, cost: 0, requests: 0 };
    if (account.month.period !== p.month) account.month = { period: p.month, cost: 0, requests: 0 };
  }

  /**
   * What to bill, as one line per usage record: upstream's own usage when it sent one; otherwise
   * (client gone, broken stream, upstream ignoring stream usage) the prompt estimate plus the
   * tokens actually delivered. Work billed when done has a line per model (usage record ids
   * `<id>` for the first, `<id>:<model>` for the others).
   */
  private measure(ticket: Ticket, end: RequestEnd): Line[] {
    if (end.kind === 'done' && end.parts.length > 0) {
      return end.parts.map((p, i) => ({
        requestId: i === 0 ? ticket.requestId : `${ticket.requestId}:${p.model}`,
        model: p.model,
        price: p.price,
        usage: p.usage,
        source: 'upstream',
      }));
    }
    const { usage, source } = this.measureOne(ticket, end);
    return [{ requestId: ticket.requestId, model: ticket.model, price: ticket.price, usage, source }];
  }

  private measureOne(ticket: Ticket, end: RequestEnd): { usage: Usage | undefined; source: string } {
    if (end.kind !== 'relayed' || end.status >= 400) return NOT_MEASURED;
    if (end.usage !== undefined) {
      // Non-token dimensions (images, speech characters, audio length) come from the request.
      return { usage: { ...ticketExtrasUsage(ticket), ...end.usage }, source: 'upstream' };
    }
    // Nothing to price (a free endpoint): no reason to run the tokenizer.
    if (ticket.price === undefined) return NOT_MEASURED;
    const completion = end.deliveredText === '' ? 0 : countTextTokens(ticket.model, end.deliveredText);
    const prompt = ticket.json === undefined ? 0 : estimatePromptTokens(ticket.path, ticket.json);
    return {
      usage: {
        promptTokens: prompt,
        cachedTokens: 0,
        completionTokens: completion,
        ...ticketExtrasUsage(ticket),
      },
      source: 'tokenizer',
    };
  }
}

const NOT_MEASURED = { usage: undefined, source: 'none' } as const;

const RESOLVED: Promise<void> = Promise.resolve();

interface Line {
  readonly requestId: string;
  readonly model: string;
  readonly price: ModelPrice | undefined;
  readonly usage: Usage | undefined;
  readonly source: string;
}

function ticketExtrasUsage(ticket: Ticket): Partial<Usage> {
  const out: Partial<Usage> = {};
  if (ticket.extras.images !== undefined) out.images = ticket.extras.images;
  if (ticket.extras.audioSeconds !== undefined) out.audioSeconds = ticket.extras.audioSeconds;
  if (ticket.extras.characters !== undefined) out.characters = ticket.extras.characters;
  return out;
}

function refuse(
  name: ConstructorParameters<typeof GatewayError>[0],
  message?: string,
  param: string | null = null,
): Admission {
  return { ok: false, error: new GatewayError(name, message, param) };
}

function unpricedRefusal(model: string): { error: GatewayError; topUp: undefined } {
  return {
    error: new GatewayError('unknown_model', `The model "${model}" has no price on this gateway.`, 'model'),
    topUp: undefined,
  };
}

/**
 * A balance refusal after a top-up says what really limited it: the HardLimit, or a database
 * that could not be asked (503, not 402: the client should retry, not recharge).
 */
function shortfallError(error: GatewayError, shortfall: Shortfall | undefined): GatewayError {
  if (error.errorName !== 'insufficient_balance') return error;
  if (shortfall === 'hard-limit') return new GatewayError('hard_limit_reached');
  if (shortfall === 'store') return new GatewayError('store_unavailable');
  return error;
}

/** Puts `ticket` (admitted as `r`) first in its account's list of loosely bounded requests. */
function link(list: LooseList, ticket: Ticket, r: Pending): void {
  const added: LooseLink = { ticket, r, prev: undefined, next: list.head };
  if (list.head !== undefined) list.head.prev = added;
  list.head = added;
  ticket.loose = added;
}

/** Takes `ticket` out of its account's list of loosely bounded requests (if it is in it). */
function unlink(list: LooseList | undefined, ticket: Ticket): void {
  const at = ticket.loose;
  if (at === undefined || list === undefined) return;
  ticket.loose = undefined;
  if (at.prev !== undefined) at.prev.next = at.next;
  else if (list.head === at) list.head = at.next;
  if (at.next !== undefined) at.next.prev = at.prev;
  at.prev = at.next = undefined;
}
