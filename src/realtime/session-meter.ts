/**
 * The money side of one realtime session. The session hands it the events that matter (it reads
 * their type cheaply first, see event-type.ts) and it answers whether a client event may go on.
 *
 * - **A reservation covers each response in flight.** A client's `response.create` is reserved
 *   before it is forwarded (`Meter.reserve`: balance ≥ $1, the bound fits the balance and the
 *   HardLimit); a response upstream starts by itself (server VAD) is reserved at its
 *   `response.created`. The bound is input (conversation-bound.ts) plus output (the response's
 *   `max_output_tokens`, else the session's, `inf` → MAX_OUTPUT_TOKENS_CAP), priced by
 *   `worstCaseCost` at the most expensive token kind of the model. `response.created` events are
 *   matched to waiting reservations first come, first served; one that finds none is reserved
 *   then, so a response can never run unreserved, whatever the client's frames looked like.
 * - **Each `response.done` is settled when it arrives**, from its `usage` (text, audio, image,
 *   cached text and audio tokens) at the session model's price; without usage, from the text and
 *   transcript delivered (the tokenizer fallback of `Meter.settle`). Audio delivered without a
 *   usage report is billed through its transcript only: its bytes are not converted to tokens.
 * - **Input transcription** (`conversation.item.input_audio_transcription.completed`) is billed
 *   at the transcription model's price when it arrives. It is not reserved (it is small and
 *   upstream runs it by itself); `Meter.settle` never takes more than the balance.
 * - Every ticket is settled exactly once: on its `response.done`, when upstream refuses the
 *   `response.create` (an `error` naming its event id), or by `settleRemaining` when the session
 *   ends. Each response has its own usage record `<session request id>:<n>`.
 *
 * To match upstream's errors to the events that caused them, a `response.create` or
 * `session.update` sent without an `event_id` is forwarded with one the gateway chose.
 */
import type { Logger } from 'pino';
import type { Account } from '../accounts/account.js';
import { usageFromOpenAI } from '../billing/cost.js';
import type { Meter, Ticket } from '../billing/meter.js';
import type { ModelPrice, PriceTable } from '../billing/price-table.js';
import { GatewayError } from '../errors/catalogue.js';
import { ConversationBound, audioTokens, eventTokens } from './conversation-bound.js';
import { ResponseBook, type BookedResponse } from './response-book.js';
import { isRecord, outputTokens, readSessionSettings, responseOutputLimit } from './session-settings.js';
import { SettingsTracker } from './settings-tracker.js';
import { TicketDesk } from './ticket-desk.js';

const TEXT_DELTAS = new Set([
  'response.output_text.delta',
  'response.output_audio_transcript.delta',
  // The beta API's names of the same events.
  'response.text.delta',
  'response.audio_transcript.delta',
]);
const TRANSCRIPTION_PARAM = 'session.audio.input.transcription.model';

export interface SessionMeterDeps {
  readonly meter: Meter;
  readonly prices: PriceTable;
  readonly account: Account;
  /** The session's own ticket from admission (nothing reserved), settled when the session ends. */
  readonly ticket: Ticket;
  readonly price: ModelPrice;
  readonly attempts: number;
  readonly maxOutputTokensCap: number;
  /** False once the account was disabled or deleted: no new response may start. */
  readonly accountUsable: () => boolean;
  readonly nextEventId: () => string;
  readonly log: Logger;
  readonly onSettled: (cost: number, outcome: string) => void;
}

export type ClientVerdict =
  /** Forward the frame; `frame` replaces it when the gateway added an event id. */
  | { readonly kind: 'forward'; readonly frame?: string }
  /** Do not forward; tell the client, the session goes on. */
  | { readonly kind: 'reject'; readonly error: GatewayError; readonly eventId: string | null }
  /** Do not forward; tell the client and end the session (nothing left to spend). */
  | { readonly kind: 'refuse'; readonly error: GatewayError; readonly eventId: string | null }
  /**
   * Hold this frame, and every client frame after it, until `until` settles (more credit is being
   * leased), then present it again as a retry.
   */
  | { readonly kind: 'wait'; readonly until: Promise<void> };

export type UpstreamVerdict =
  | { readonly kind: 'relay' }
  /** A response upstream started cannot be reserved: cancel it and end the session. */
  | { readonly kind: 'refuse'; readonly error: GatewayError; readonly responseId: string };

type Event = Record<string, unknown> | undefined;

export class SessionMeter {
  private readonly book = new ResponseBook();
  private readonly conversation = new ConversationBound();
  private readonly settings: SettingsTracker;
  private readonly desk: TicketDesk;
  private clientGone = false;
  /** Set once the session settled everything: later events (a late `response.done`) change nothing. */
  private over = false;

  constructor(private readonly deps: SessionMeterDeps) {
    this.settings = new SettingsTracker(deps.maxOutputTokensCap);
    this.desk = new TicketDesk(deps);
  }

  /** Responses asked for or running, not settled yet. */
  get inFlight(): number {
    return this.book.size;
  }

  /** Micro-dollars charged so far, and responses (and transcriptions) settled. */
  get charged(): number {
    return this.desk.charged;
  }

  get settledResponses(): number {
    return this.desk.settled;
  }

  runningIds(): string[] {
    return this.book.runningIds();
  }

  /** Resolves once every settlement so far is in the journal (see `Meter.durable`). */
  durable(): Promise<void> {
    return this.deps.meter.durable();
  }

  /** The client is gone: cancelled responses are recorded as `client-gone` from now on. */
  markClientGone(): void {
    this.clientGone = true;
  }

  /** A client text frame of type `type`, before it is forwarded. */
  client(type: string, frame: Buffer, retry = false): ClientVerdict {
    if (this.over) return { kind: 'forward' };
    if (type === 'input_audio_buffer.append') {
      // Not parsed: the frame is almost all base64 audio, so its length bounds the audio.
      this.conversation.add(audioTokens(frame.length, this.settings.bytesPerSecond()));
      return { kind: 'forward' };
    }
    if (type !== 'response.create' && type !== 'session.update' && type !== 'conversation.item.create')
      return { kind: 'forward' };
    const event = parse(frame);
    // Unparseable: upstream refuses it too (and a response it starts is reserved when it starts).
    if (event === undefined) return { kind: 'forward' };
    if (type === 'conversation.item.create') {
      this.conversation.add(eventTokens(event, frame.length, this.settings.bytesPerSecond()));
      return { kind: 'forward' };
    }
    const given = typeof event['event_id'] === 'string' ? event['event_id'] : undefined;
    const eventId = given ?? this.deps.nextEventId();
    const error =
      type === 'response.create'
        ? this.responseCreate(event, frame, eventId, retry)
        : this.sessionUpdate(event, frame, eventId);
    if (error?.kind === 'wait') return error;
    if (error !== undefined) return { ...error, eventId };
    if (given !== undefined) return { kind: 'forward' };
    return { kind: 'forward', frame: JSON.stringify({ ...event, event_id: eventId }) };
  }

  /** An upstream text frame of type `type`, before it is relayed. */
  upstream(type: string, frame: Buffer): UpstreamVerdict {
    if (this.over) return { kind: 'relay' };
    if (TEXT_DELTAS.has(type)) {
      const event = parse(frame);
      const id = event?.['response_id'];
      const delta = event?.['delta'];
      if (typeof id === 'string' && typeof delta === 'string') this.book.delivered(id, delta);
      return { kind: 'relay' };
    }
    switch (type) {
      case 'response.created':
        return this.responseCreated(parse(frame));
      case 'response.done':
        this.responseDone(parse(frame));
        break;
      case 'session.created':
      case 'session.updated':
        this.conversation.sessionDescribed(frame.length);
        this.settings.described(readSessionSettings(parse(frame)?.['session']), type === 'session.updated');
        break;
      case 'conversation.item.input_audio_transcription.completed':
        this.transcribed(parse(frame));
        break;
      case 'error':
        this.upstreamError(parse(frame));
        break;
    }
    return { kind: 'relay' };
  }

  /**
   * The session ends: responses still running are billed from what was delivered (the tokenizer
   * counts their text and transcript), reservations whose response never started are released.
   */
  settleRemaining(outcome: 'client-gone' | 'upstream-error'): void {
    this.over = true;
    const { running, waiting } = this.book.drain();
    const attempts = this.desk.attempts;
    for (const r of running) {
      const end = { kind: 'relayed', status: 200, end: outcome, usage: undefined, attempts } as const;
      this.desk.settle(r.ticket, { ...end, deliveredText: r.text });
    }
    const status = outcome === 'client-gone' ? 499 : 502;
    for (const r of waiting) this.desk.settle(r.ticket, { kind: 'failed', status, outcome, attempts });
  }

  /** The session's own usage record (no cost): written once, when the session is over. */
  settleSession(): void {
    this.desk.settleSession();
  }

  private responseCreate(
    event: Record<string, unknown>,
    frame: Buffer,
    eventId: string,
    retry: boolean,
  ): Refusal | Wait | undefined {
    if (!this.deps.accountUsable()) return { kind: 'refuse', error: new GatewayError('account_disabled') };
    const own = responseOutputLimit(event['response']);
    const cap = this.deps.maxOutputTokensCap;
    const outputBound = own === undefined ? this.settings.outputBound() : outputTokens(own, cap);
    // The event's own instructions and input items are part of this response's input.
    const ownInput = eventTokens(event, frame.length, this.settings.bytesPerSecond());
    const reserved = this.reserve(ownInput, outputBound);
    if (!reserved.ok && !retry && reserved.error.errorName === 'insufficient_balance') {
      // Several instances: the lease here may just be smaller than this response; ask, then retry.
      const until = this.desk.topUp(this.inputBound(ownInput), outputBound);
      if (until !== undefined) return { kind: 'wait', until };
    }
    if (!reserved.ok) return { kind: 'refuse', error: reserved.error };
    this.book.wait({ ticket: reserved.ticket, outputBound, eventId, text: '' });
    return undefined;
  }

  private sessionUpdate(event: Record<string, unknown>, frame: Buffer, eventId: string): Refusal | undefined {
    const s = readSessionSettings(event['session']);
    const model = this.desk.model;
    if (s.model !== undefined && s.model.toLowerCase() !== model.toLowerCase()) {
      const message = `The session model cannot be changed on this gateway (it is "${model}").`;
      return { kind: 'reject', error: new GatewayError('invalid_value', message, 'session.model') };
    }
    // The transcription model passes the same gates as the session's model.
    const transcription = s.transcriptionModel;
    if (typeof transcription === 'string') {
      const allow = this.deps.account.allowModels;
      if (allow !== null && !allow.has(transcription)) {
        const message = `This key may not use the model "${transcription}".`;
        return { kind: 'reject', error: new GatewayError('model_not_allowed', message, TRANSCRIPTION_PARAM) };
      }
      if (this.deps.prices.lookup(transcription) === undefined) {
        const message = `The model "${transcription}" has no price on this gateway.`;
        return { kind: 'reject', error: new GatewayError('unknown_model', message, TRANSCRIPTION_PARAM) };
      }
    }
    // Instructions and tools join every later response's input.
    this.conversation.add(eventTokens(event, frame.length, this.settings.bytesPerSecond()));
    this.settings.requested(eventId, s);
    return undefined;
  }

  private responseCreated(event: Event): UpstreamVerdict {
    const id = responseId(event);
    if (id === undefined || this.book.isKnown(id)) return { kind: 'relay' };
    let r = this.book.nextWaiting();
    let verdict: UpstreamVerdict = { kind: 'relay' };
    if (r === undefined) {
      // Started by upstream itself (server VAD): reserve now, or cancel it.
      const outputBound = this.settings.outputBound();
      const reserved = this.deps.accountUsable()
        ? this.reserve(0, outputBound)
        : { ok: false as const, error: new GatewayError('account_disabled') };
      // What it costs until the cancel lands is still billed, on a ticket with nothing reserved.
      const ticket = reserved.ok ? reserved.ticket : this.desk.untracked();
      r = { ticket, outputBound, eventId: undefined, text: '' };
      if (!reserved.ok) verdict = { kind: 'refuse', error: reserved.error, responseId: id };
    }
    this.book.started(id, r);
    this.conversation.responseStarted(id);
    return verdict;
  }

  private responseDone(event: Event): void {
    const response = isRecord(event?.['response']) ? event['response'] : undefined;
    const id = responseId(event);
    if (id !== undefined && this.book.isSettled(id)) return;
    const r: BookedResponse = (id === undefined ? undefined : this.book.finish(id)) ??
      this.book.nextWaiting() ?? {
        ticket: this.desk.untracked(),
        outputBound: 0,
        eventId: undefined,
        text: '',
      };
    const usage = usageFromOpenAI(response?.['usage']);
    const failed = response?.['status'] === 'failed';
    this.desk.settle(r.ticket, {
      kind: 'relayed',
      status: 200,
      end: failed ? 'upstream-error' : this.clientGone ? 'client-gone' : 'completed',
      usage,
      deliveredText: usage === undefined ? r.text : '',
      attempts: this.desk.attempts,
    });
    if (id !== undefined)
      this.conversation.responseEnded(id, usage?.promptTokens, usage?.completionTokens ?? r.outputBound);
  }

  private transcribed(event: Event): void {
    const usage = usageFromOpenAI(event?.['usage']);
    if (usage !== undefined) this.desk.settleTranscription(this.settings.transcriptionModel, usage);
  }

  /** Upstream refused a client event: release what was reserved for it. */
  private upstreamError(event: Event): void {
    const err = isRecord(event?.['error']) ? event['error'] : undefined;
    const cause = err?.['event_id'];
    if (typeof cause !== 'string') return;
    this.settings.refused(cause);
    const r = this.book.takeWaiting(cause);
    const attempts = this.desk.attempts;
    if (r !== undefined)
      this.desk.settle(r.ticket, { kind: 'failed', status: 400, outcome: 'upstream-error', attempts });
  }

  /** Reserves a response: the conversation so far, its own input, and what others in flight add. */
  private reserve(ownInput: number, outputBound: number): ReturnType<Meter['reserve']> {
    return this.desk.reserve(this.inputBound(ownInput), outputBound);
  }

  private inputBound(ownInput: number): number {
    return this.conversation.inputBound(ownInput + this.book.outputInFlight());
  }
}

type Refusal = { readonly kind: 'reject' | 'refuse'; readonly error: GatewayError };
type Wait = Extract<ClientVerdict, { kind: 'wait' }>;

function parse(frame: Buffer): Event {
  try {
    const v: unknown = JSON.parse(frame.toString('utf8'));
    return isRecord(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function responseId(event: Event): string | undefined {
  const response = event?.['response'];
  const id = isRecord(response) ? response['id'] : undefined;
  return typeof id === 'string' && id !== '' ? id : undefined;
}
