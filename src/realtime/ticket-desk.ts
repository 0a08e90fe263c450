/**
 * The tickets of one realtime session: the session's own (from admission, nothing reserved, one
 * usage record with no cost when the session ends) and one per response or transcription, with
 * request ids `<session request id>:<n>` so each has its own usage record. Everything goes through
 * `Meter` (reserve, hold, settle); this only numbers the tickets, prices responses at the session
 * model and counts what was charged.
 */
import type { Logger } from 'pino';
import type { Account } from '../accounts/account.js';
import { worstCaseCost, type Usage } from '../billing/cost.js';
import type { Meter, RequestEnd, Ticket } from '../billing/meter.js';
import type { ModelPrice, PriceTable } from '../billing/price-table.js';

export const REALTIME_PATH = '/v1/realtime';

export interface TicketDeskDeps {
  readonly meter: Meter;
  readonly account: Account;
  /** The session's own ticket from admission. */
  readonly ticket: Ticket;
  /** The session model's price (responses are billed at it). */
  readonly price: ModelPrice;
  /** Upstream handshake attempts, recorded on every usage record of the session. */
  readonly attempts: number;
  readonly prices: PriceTable;
  readonly log: Logger;
  readonly onSettled: (cost: number, outcome: string) => void;
}

export class TicketDesk {
  /** Micro-dollars charged so far, and tickets settled (the session's own not counted). */
  charged = 0;
  settled = 0;
  private seq = 0;

  constructor(private readonly deps: TicketDeskDeps) {}

  get attempts(): number {
    return this.deps.attempts;
  }

  get model(): string {
    return this.deps.ticket.model;
  }

  get requestId(): string {
    return this.deps.ticket.requestId;
  }

  /** Reserves a response of at most `input` + `output` tokens, priced at its most expensive kind. */
  reserve(input: number, output: number): ReturnType<Meter['reserve']> {
    const { meter, account, price } = this.deps;
    const reserve = worstCaseCost(price, input, output, account.rates);
    return meter.reserve(account, { ...this.spec(this.model, price), reserve });
  }

  /**
   * Several instances: asks for the credit a response of `input` + `output` tokens needs when
   * this instance's lease does not hold it (a reservation refused for the balance). Undefined
   * when no more credit can appear by asking (one process: the balance is all there is).
   */
  topUp(input: number, output: number): Promise<void> | undefined {
    const { meter, account, price } = this.deps;
    if (!meter.canTopUp) return undefined;
    return meter.cover(account, worstCaseCost(price, input, output, account.rates));
  }

  /** A ticket with nothing reserved, for usage that arrives without a reservation of its own. */
  untracked(model = this.model, price = this.deps.price): Ticket {
    return this.deps.meter.hold(this.deps.account, { ...this.spec(model, price), reserve: 0 });
  }

  settle(ticket: Ticket, end: RequestEnd): void {
    const cost = this.deps.meter.settle(ticket, end);
    this.charged += cost;
    this.settled++;
    this.deps.onSettled(cost, end.kind === 'relayed' ? end.end : end.outcome);
  }

  /**
   * Input transcription usage, billed when it arrives at the transcription model's price (not
   * reserved: it is small and upstream runs it by itself; `Meter.settle` never takes more than the
   * balance). `session.update` refuses unpriced transcription models, so a miss is only logged.
   */
  settleTranscription(model: string | null, usage: Usage): void {
    const price = model === null ? undefined : this.deps.prices.lookup(model);
    if (model === null || price === undefined) {
      const msg = 'realtime transcription usage without a priced model: not billed';
      this.deps.log.warn({ requestId: this.requestId, model }, msg);
      return;
    }
    const end = { kind: 'relayed', status: 200, end: 'completed', usage, deliveredText: '' } as const;
    this.settle(this.untracked(model, price), { ...end, attempts: this.deps.attempts });
  }

  /** The session's own usage record: written once, when the session is over. */
  settleSession(): void {
    const end = { kind: 'done', status: 101, outcome: 'completed', parts: [] } as const;
    this.deps.meter.settle(this.deps.ticket, { ...end, attempts: this.deps.attempts });
  }

  private spec(
    model: string,
    price: ModelPrice,
  ): { requestId: string; path: string; model: string; price: ModelPrice; clientIp?: string } {
    this.seq++;
    const ip = this.deps.ticket.clientIp;
    return {
      requestId: `${this.requestId}:${this.seq}`,
      path: REALTIME_PATH,
      model,
      price,
      ...(ip !== null && { clientIp: ip }),
    };
  }
}
