/**
 * Reads an upstream body line by line without holding it whole: batch input and output files
 * are JSONL and may be hundreds of megabytes.
 */
import type { UpstreamBody } from '../upstream/upstream-body.js';

export type LinesEnd = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** Calls `onLine` for every non-empty line; a line longer than `maxLine` fails the read. */
export function forEachLine(
  body: UpstreamBody,
  maxLine: number,
  onLine: (line: Buffer) => void,
): Promise<LinesEnd> {
  return new Promise((resolve) => {
    let partial: Buffer[] = [];
    let partialBytes = 0;
    let done = false;
    const finish = (end: LinesEnd): void => {
      if (done) return;
      done = true;
      if (!end.ok) body.destroy();
      resolve(end);
    };
    const emit = (line: Buffer): void => {
      const trimmed = line[line.length - 1] === 0x0d ? line.subarray(0, -1) : line;
      if (trimmed.length === 0) return;
      try {
        onLine(trimmed);
      } catch (err: unknown) {
        finish({ ok: false, reason: err instanceof Error ? err.message : String(err) });
      }
    };
    body.attach({
      onData(chunk) {
        if (done) return;
        let start = 0;
        for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
          const piece = chunk.subarray(start, nl);
          if (partial.length > 0) {
            emit(Buffer.concat([...partial, piece], partialBytes + piece.length));
            partial = [];
            partialBytes = 0;
          } else emit(piece);
          start = nl + 1;
        }
        if (start < chunk.length) {
          partial.push(chunk.subarray(start));
          partialBytes += chunk.length - start;
          if (partialBytes > maxLine) finish({ ok: false, reason: `a line is longer than ${maxLine} bytes` });
        }
      },
      onEnd() {
        if (partial.length > 0) emit(Buffer.concat(partial, partialBytes));
        finish({ ok: true });
      },
      onError(err) {
        finish({ ok: false, reason: err.message });
      },
    });
  });
}
