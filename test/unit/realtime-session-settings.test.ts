// Session settings are read from both realtime API shapes, and garbage counts as absent.
import { describe, expect, it } from 'vitest';
import {
  outputTokens,
  readSessionSettings,
  responseOutputLimit,
} from '../../src/realtime/session-settings.js';
import { SettingsTracker } from '../../src/realtime/settings-tracker.js';

describe('readSessionSettings', () => {
  it('reads the GA shape', () => {
    expect(
      readSessionSettings({
        model: 'gpt-realtime',
        max_output_tokens: 'inf',
        audio: {
          input: { format: { type: 'audio/pcm', rate: 24000 }, transcription: { model: 'whisper-1' } },
        },
      }),
    ).toEqual({
      model: 'gpt-realtime',
      maxOutputTokens: 'inf',
      inputBytesPerSecond: 48_000,
      transcriptionModel: 'whisper-1',
    });
    expect(
      readSessionSettings({ audio: { input: { format: { type: 'audio/pcmu' }, transcription: null } } }),
    ).toEqual({
      inputBytesPerSecond: 8_000,
      transcriptionModel: null,
    });
  });

  it('reads the beta shape', () => {
    expect(
      readSessionSettings({
        max_response_output_tokens: 300,
        input_audio_format: 'g711_alaw',
        input_audio_transcription: { model: 'gpt-4o-transcribe' },
      }),
    ).toEqual({ maxOutputTokens: 300, inputBytesPerSecond: 8_000, transcriptionModel: 'gpt-4o-transcribe' });
  });

  it('ignores values of the wrong type', () => {
    expect(
      readSessionSettings({
        model: 5,
        max_output_tokens: -3,
        input_audio_format: 'mp3',
        audio: { input: { format: 7 } },
      }),
    ).toEqual({});
    expect(readSessionSettings('nope')).toEqual({});
  });
});

describe('output limits', () => {
  it('takes the response limit in either spelling, and caps inf and large values', () => {
    expect(responseOutputLimit({ max_output_tokens: 200 })).toBe(200);
    expect(responseOutputLimit({ max_response_output_tokens: 'inf' })).toBe('inf');
    expect(responseOutputLimit({ max_output_tokens: 1.5 })).toBeUndefined();
    expect(outputTokens('inf', 16_384)).toBe(16_384);
    expect(outputTokens(undefined, 16_384)).toBe(16_384);
    expect(outputTokens(50_000, 16_384)).toBe(16_384);
    expect(outputTokens(100, 16_384)).toBe(100);
  });
});

describe('SettingsTracker', () => {
  it('bounds by the more expensive value until upstream confirms an update', () => {
    const t = new SettingsTracker(16_384);
    t.described({ maxOutputTokens: 100, inputBytesPerSecond: 48_000 }, false);
    expect(t.outputBound()).toBe(100);
    t.requested('e1', { maxOutputTokens: 'inf', inputBytesPerSecond: 8_000 });
    expect(t.outputBound()).toBe(16_384);
    expect(t.bytesPerSecond()).toBe(8_000);
    t.described({ maxOutputTokens: 2000, inputBytesPerSecond: 8_000 }, true);
    expect(t.outputBound()).toBe(2000);
    t.requested('e2', { maxOutputTokens: 4000 });
    t.refused('e2');
    expect(t.outputBound()).toBe(2000);
  });

  it('assumes the smallest audio format until one is known', () => {
    expect(new SettingsTracker(10).bytesPerSecond()).toBe(8_000);
  });
});
