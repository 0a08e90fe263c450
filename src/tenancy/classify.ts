/**
 * Matches a request to its route of the endpoint table (endpoint-policy.ts): routes indexed by
 * their second path segment, compared segment by segment, exact patterns first because the table
 * lists them first.
 */
import { FAMILIES, type FamilyDef, type FamilyName, type RouteDef } from './endpoint-policy.js';
import { isObjectKind, type ObjectKind } from './object-kinds.js';

/** A classified request: its family and route, with the objects its path names. */
export interface Classified {
  readonly family: FamilyName;
  readonly route: RouteDef;
  /** Owned objects named by the path, outermost first. */
  readonly pathObjects: ReadonlyArray<{ readonly kind: ObjectKind; readonly id: string }>;
}

type Segment =
  | { readonly kind: 'literal'; readonly text: string }
  | { readonly kind: 'object'; readonly object: ObjectKind }
  | { readonly kind: 'any' };

interface Compiled {
  readonly family: FamilyName;
  readonly route: RouteDef;
  readonly segments: readonly Segment[];
  readonly rest: boolean;
}

function compile(family: FamilyName, route: RouteDef): Compiled {
  const parts = route.pattern.split('/').slice(1);
  const rest = parts[parts.length - 1] === '**';
  if (rest) parts.pop();
  const segments = parts.map((p): Segment => {
    if (!p.startsWith('{')) return { kind: 'literal', text: p };
    const name = p.slice(1, -1);
    if (name === 'id') return { kind: 'any' };
    if (!isObjectKind(name)) throw new Error(`unknown object kind in ${route.pattern}`);
    return { kind: 'object', object: name };
  });
  return { family, route, segments, rest };
}

/**
 * Routes indexed by their second path segment (`chat`, `files`, …): a request is compared with a
 * handful of candidates, exact patterns before wildcards because the table lists them first.
 */
const INDEX: ReadonlyMap<string, readonly Compiled[]> = (() => {
  const index = new Map<string, Compiled[]>();
  for (const [family, def] of Object.entries(FAMILIES) as Array<[FamilyName, FamilyDef]>) {
    for (const route of def.routes) {
      const c = compile(family, route);
      const head = c.segments[1];
      if (head?.kind !== 'literal') throw new Error(`route ${route.pattern} needs a literal second segment`);
      const list = index.get(head.text) ?? [];
      list.push(c);
      index.set(head.text, list);
    }
  }
  return index;
})();

/** The route of `method pathname`, or undefined when no family covers it (UNKNOWN_ENDPOINTS). */
export function classify(method: string, pathname: string): Classified | undefined {
  const parts = pathname.split('/');
  // parts[0] is '' (leading slash), parts[1] 'v1'.
  const candidates = INDEX.get(parts[2] ?? '');
  if (candidates === undefined) return undefined;
  const n = parts.length - 1;
  for (const c of candidates) {
    if (c.route.method !== '*' && c.route.method !== method) continue;
    const len = c.segments.length;
    if (c.rest ? n <= len : n !== len) continue;
    const objects = match(c.segments, parts);
    if (objects !== undefined) return { family: c.family, route: c.route, pathObjects: objects };
  }
  return undefined;
}

function match(
  segments: readonly Segment[],
  parts: readonly string[],
): Classified['pathObjects'] | undefined {
  let objects: Array<{ kind: ObjectKind; id: string }> | undefined;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as Segment;
    const part = parts[i + 1] ?? '';
    if (seg.kind === 'literal') {
      if (part !== seg.text) return undefined;
    } else {
      if (part === '') return undefined;
      if (seg.kind === 'object') (objects ??= []).push({ kind: seg.object, id: decodeSegment(part) });
    }
  }
  return objects ?? NO_OBJECTS;
}

const NO_OBJECTS: Classified['pathObjects'] = [];

function decodeSegment(part: string): string {
  if (!part.includes('%')) return part;
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}
