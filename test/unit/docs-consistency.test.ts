// The docs cannot drift from the code: every environment variable the config reads and every
// error code of the catalogue must be documented (README and the docs site).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../src/errors/catalogue.js';

const read = (p: string): string => readFileSync(new URL(`../../${p}`, import.meta.url), 'utf8');
const configSource = read('src/config/config.ts');
const envNames = [
  ...new Set(
    [...configSource.matchAll(/\b(?:str|int|num|bool|opt|list|usd)\('([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]!),
  ),
];

describe('documentation matches the code', () => {
  it('finds the variables the config reads', () => {
    expect(envNames).toContain('PORT');
    expect(envNames).toContain('OPENAI_API_BASE');
    expect(envNames.length).toBeGreaterThan(30);
  });

  it.each(envNames)('documents %s in README.md and the configuration page', (name) => {
    expect(read('README.md')).toContain(name);
    expect(read('pages/docs/configuration.html')).toContain(name);
  });

  it.each(Object.values(ERRORS).map((e) => e.code ?? 'null'))(
    'documents error code %s on the API page',
    (code) => {
      expect(read('pages/docs/api.html')).toContain(`<code>${code}</code>`);
    },
  );
});
