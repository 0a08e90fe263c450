// Objects named in JSON request bodies, and ids of created objects found in answers.
import { describe, expect, it } from 'vitest';
import { bodyRefs } from '../../src/tenancy/body-refs.js';
import { CreatedIdScanner, findCreatedId } from '../../src/tenancy/created-id.js';

function refs(json: Record<string, unknown>) {
  return bodyRefs(Buffer.from(JSON.stringify(json)), json);
}

describe('bodyRefs', () => {
  it('finds nothing in a plain chat body (and does not walk it)', () => {
    expect(
      refs({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'file-abc is a string' }] }),
    ).toEqual([]);
  });

  it('finds every kind of reference, at any depth, once each', () => {
    const found = refs({
      model: 'gpt-4o-mini',
      previous_response_id: 'resp_1',
      conversation: { id: 'conv_1' },
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_file', file_id: 'file-1' },
            { type: 'input_text', text: 'x' },
          ],
        },
        { role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] },
      ],
      tools: [
        { type: 'file_search', vector_store_ids: ['vs_1', 'vs_2'] },
        { type: 'code_interpreter', container: { type: 'auto', file_ids: ['file-2'] } },
        { type: 'code_interpreter', container: 'cntr_1' },
      ],
    });
    expect(found).toEqual(
      expect.arrayContaining([
        { kind: 'response', id: 'resp_1', param: 'previous_response_id' },
        { kind: 'conversation', id: 'conv_1', param: 'conversation' },
        { kind: 'file', id: 'file-1', param: 'file_id' },
        { kind: 'vector_store', id: 'vs_1', param: 'vector_store_ids' },
        { kind: 'vector_store', id: 'vs_2', param: 'vector_store_ids' },
        { kind: 'file', id: 'file-2', param: 'file_ids' },
        { kind: 'container', id: 'cntr_1', param: 'container' },
      ]),
    );
    expect(found).toHaveLength(7);
  });

  it('reads batch and fine-tuning file fields and conversation strings', () => {
    expect(refs({ input_file_id: 'file-9', endpoint: '/v1/chat/completions' })).toEqual([
      { kind: 'file', id: 'file-9', param: 'input_file_id' },
    ]);
    expect(
      refs({ training_file: 'file-t', validation_file: 'file-v' })
        .map((r) => r.id)
        .sort(),
    ).toEqual(['file-t', 'file-v']);
    expect(refs({ conversation: 'conv_9' })).toEqual([
      { kind: 'conversation', id: 'conv_9', param: 'conversation' },
    ]);
  });

  it('survives a hostile, deeply nested body', () => {
    let deep: unknown = { file_id: 'file-deep' };
    for (let i = 0; i < 10_000; i++) deep = [deep];
    const json = { input: deep, previous_response_id: 'resp_top' };
    expect(bodyRefs(Buffer.from('"previous_response_id"'), json)).toEqual([
      { kind: 'response', id: 'resp_top', param: 'previous_response_id' },
    ]);
  });
});

describe('findCreatedId', () => {
  it('reads the top-level id of compact and pretty-printed JSON', () => {
    expect(findCreatedId(Buffer.from('{"id":"file-abc","object":"file"}'), 'file-')).toBe('file-abc');
    expect(findCreatedId(Buffer.from('{\n  "id": "resp_67cc",\n  "object": "response"}'), 'resp_')).toBe(
      'resp_67cc',
    );
  });

  it('skips ids of another kind and keys that merely end in id', () => {
    const body =
      '{"object":"batch","input_file_id":"file-in","id":"batch_1","previous_response_id":"resp_x"}';
    expect(findCreatedId(Buffer.from(body), 'batch_')).toBe('batch_1');
    expect(findCreatedId(Buffer.from(body), 'resp_')).toBeUndefined();
    expect(findCreatedId(Buffer.from('{"id":"upload_1","file":{"id":"file-z"}}'), 'file-')).toBe('file-z');
  });

  it('finds an id split across stream chunks', () => {
    const stream =
      'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_split123","status":"in_progress"}}\n\n';
    for (let cut = 1; cut < stream.length; cut += 7) {
      const s = new CreatedIdScanner('resp_');
      s.push(Buffer.from(stream.slice(0, cut)));
      s.push(Buffer.from(stream.slice(cut)));
      expect(s.id, `cut at ${cut}`).toBe('resp_split123');
    }
  });
});
