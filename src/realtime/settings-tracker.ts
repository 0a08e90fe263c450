/**
 * The session settings that bound a response (its output limit, the input audio format) and
 * the transcription model, as upstream confirmed them (`session.created` / `session.updated`), and
 * while a client's `session.update` is not confirmed yet, the more expensive of the old and the
 * new value: a response asked for in between is reserved for whichever upstream applies.
 */
import { UNKNOWN_FORMAT_BYTES_PER_SECOND } from './conversation-bound.js';
import { outputTokens, type OutputLimit, type SessionSettings } from './session-settings.js';

interface Pending {
  readonly maxOutput: number | undefined;
  readonly bytesPerSecond: number | undefined;
}

export class SettingsTracker {
  private maxOutput: OutputLimit | undefined;
  private bytesPerSecondConfirmed: number | undefined;
  /** Client updates not confirmed yet, by event id, oldest first. */
  private readonly unconfirmed = new Map<string, Pending>();
  /** The transcription model in force (null: transcription off). */
  transcriptionModel: string | null = null;

  constructor(private readonly outputCap: number) {}

  /** A client's `session.update` (with event id `eventId`) was forwarded. */
  requested(eventId: string, s: SessionSettings): void {
    if (typeof s.transcriptionModel === 'string') this.transcriptionModel = s.transcriptionModel;
    this.unconfirmed.set(eventId, {
      maxOutput:
        s.maxOutputTokens === undefined ? undefined : outputTokens(s.maxOutputTokens, this.outputCap),
      bytesPerSecond: s.inputBytesPerSecond,
    });
  }

  /** Upstream described the session; a `session.updated` confirms the oldest update waiting. */
  described(s: SessionSettings, isUpdate: boolean): void {
    if (s.maxOutputTokens !== undefined) this.maxOutput = s.maxOutputTokens;
    if (s.inputBytesPerSecond !== undefined) this.bytesPerSecondConfirmed = s.inputBytesPerSecond;
    if (s.transcriptionModel !== undefined) this.transcriptionModel = s.transcriptionModel;
    if (isUpdate) {
      // Upstream answers updates in order.
      const oldest = this.unconfirmed.keys().next();
      if (oldest.done !== true) this.unconfirmed.delete(oldest.value);
    }
  }

  /** Upstream refused the client event `eventId` (an update it refused changes nothing). */
  refused(eventId: string): void {
    this.unconfirmed.delete(eventId);
  }

  /** Output tokens of a response without a limit of its own. */
  outputBound(): number {
    let bound = outputTokens(this.maxOutput, this.outputCap);
    for (const u of this.unconfirmed.values())
      if (u.maxOutput !== undefined) bound = Math.max(bound, u.maxOutput);
    return bound;
  }

  /** Bytes per second of the input audio: fewer bytes per second means more tokens per byte. */
  bytesPerSecond(): number {
    let bps = this.bytesPerSecondConfirmed ?? UNKNOWN_FORMAT_BYTES_PER_SECOND;
    for (const u of this.unconfirmed.values())
      if (u.bytesPerSecond !== undefined) bps = Math.min(bps, u.bytesPerSecond);
    return bps;
  }
}
