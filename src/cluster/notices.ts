/**
 * The change notices instances send each other, and their wire format. A notice says WHAT
 * changed (an id), never the new state: PostgreSQL is the system of record, and a receiver
 * re-reads it. To add a kind: add its topic to TOPICS, a variant to Notice, a case to
 * parseNotice (the compiler points at every switch that must learn it).
 */

export const TOPICS = ['account', 'key', 'lease-recall'] as const;
export type Topic = (typeof TOPICS)[number];

export type Notice =
  /** An account's row changed (credit, limits, ACLs, status, deletion): reload it. */
  | { readonly topic: 'account'; readonly id: number }
  /** An upstream key was added, changed (status, health) or deleted: reload it. */
  | { readonly topic: 'key'; readonly id: number }
  /** Give back the credit lease held for this account (its balance or limits changed). */
  | { readonly topic: 'lease-recall'; readonly accountId: number };

export type NoticeOf<T extends Topic> = Extract<Notice, { readonly topic: T }>;

/** What a receiver knows about a notice besides its content. */
export type Delivery =
  /** Applied by the instance that sent it, before it was published. */
  | { readonly kind: 'local' }
  /** Received over Redis; `version` is the topic's counter (INCR) when it was published. */
  | { readonly kind: 'remote'; readonly origin: string; readonly version: number };

/** Why a receiver must re-read a topic instead of trusting its cache (see broadcast.ts). */
export type ReconcileReason =
  | { readonly kind: 'gap'; readonly expected: number; readonly received: number }
  | { readonly kind: 'reset' }
  | { readonly kind: 'resubscribed' }
  | { readonly kind: 'handler-failed'; readonly error: string };

export type Handler<T extends Topic> = (notice: NoticeOf<T>, delivery: Delivery) => void | Promise<void>;

/** One message on the channel: `<epoch> <version> <json {origin, notice}>`. */
export interface Envelope {
  readonly epoch: string;
  readonly version: number;
  readonly origin: string;
  readonly notice: Notice;
}

export function encodeBody(origin: string, notice: Notice): string {
  return JSON.stringify({ origin, notice });
}

export function decodeEnvelope(message: string): Envelope | undefined {
  const first = message.indexOf(' ');
  const second = message.indexOf(' ', first + 1);
  if (first <= 0 || second <= first) return undefined;
  const epoch = message.slice(0, first);
  const version = Number(message.slice(first + 1, second));
  if (!Number.isSafeInteger(version) || version < 1) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(message.slice(second + 1));
  } catch {
    return undefined;
  }
  if (!isRecord(body) || typeof body.origin !== 'string') return undefined;
  const notice = parseNotice(body.notice);
  return notice === undefined ? undefined : { epoch, version, origin: body.origin, notice };
}

/** Validates a notice from another instance (another build may send kinds this one lacks). */
export function parseNotice(value: unknown): Notice | undefined {
  if (!isRecord(value) || !isTopic(value.topic)) return undefined;
  const topic = value.topic;
  switch (topic) {
    case 'account':
    case 'key':
      return isId(value.id) ? { topic, id: value.id } : undefined;
    case 'lease-recall':
      return isId(value.accountId) ? { topic, accountId: value.accountId } : undefined;
    default:
      return assertNever(topic);
  }
}

export function isTopic(value: unknown): value is Topic {
  return typeof value === 'string' && (TOPICS as readonly string[]).includes(value);
}

function isId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function assertNever(value: never): never {
  throw new Error(`unhandled notice topic ${String(value)}`);
}
