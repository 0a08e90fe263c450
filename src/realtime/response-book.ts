/**
 * Which tickets belong to which realtime responses: reservations waiting for their response to
 * start (in the order they were asked for), running responses by id with the text delivered so
 * far, and the ids already settled (a repeated `response.done` must not bill twice).
 */
import type { Ticket } from '../billing/meter.js';

// Delivered text kept per response for the tokenizer fallback (far above any response's output).
const MAX_DELIVERED_CHARS = 1_000_000;
// Ids of settled responses remembered.
const SETTLED_IDS_KEPT = 256;

export interface BookedResponse {
  readonly ticket: Ticket;
  /** Output tokens reserved for it. */
  readonly outputBound: number;
  /** The event id of the `response.create` that asked for it (none when upstream started it). */
  readonly eventId: string | undefined;
  text: string;
}

export class ResponseBook {
  private readonly waiting: BookedResponse[] = [];
  private readonly running = new Map<string, BookedResponse>();
  private readonly settled: string[] = [];

  get size(): number {
    return this.waiting.length + this.running.size;
  }

  /** Output tokens reserved for everything in flight. */
  outputInFlight(): number {
    let sum = 0;
    for (const r of this.waiting) sum += r.outputBound;
    for (const r of this.running.values()) sum += r.outputBound;
    return sum;
  }

  runningIds(): string[] {
    return [...this.running.keys()];
  }

  isKnown(id: string): boolean {
    return this.running.has(id) || this.settled.includes(id);
  }

  isSettled(id: string): boolean {
    return this.settled.includes(id);
  }

  /** A reservation made for a `response.create` that was forwarded. */
  wait(r: BookedResponse): void {
    this.waiting.push(r);
  }

  /** The oldest reservation still waiting for its response. */
  nextWaiting(): BookedResponse | undefined {
    return this.waiting.shift();
  }

  /** Removes the waiting reservation of the client event `eventId`. */
  takeWaiting(eventId: string): BookedResponse | undefined {
    const i = this.waiting.findIndex((r) => r.eventId === eventId);
    return i < 0 ? undefined : this.waiting.splice(i, 1)[0];
  }

  started(id: string, r: BookedResponse): void {
    this.running.set(id, r);
  }

  /** A running response ended: removes it and remembers its id as settled. */
  finish(id: string): BookedResponse | undefined {
    const r = this.running.get(id);
    this.running.delete(id);
    this.settled.push(id);
    if (this.settled.length > SETTLED_IDS_KEPT) this.settled.shift();
    return r;
  }

  delivered(id: string, text: string): void {
    const r = this.running.get(id);
    if (r !== undefined && r.text.length < MAX_DELIVERED_CHARS) r.text += text;
  }

  /** Empties the book: every response still running, and every reservation still waiting. */
  drain(): { running: BookedResponse[]; waiting: BookedResponse[] } {
    const out = { running: [...this.running.values()], waiting: this.waiting.splice(0) };
    for (const id of this.running.keys()) this.settled.push(id);
    this.running.clear();
    return out;
  }
}
