/**
 * Summarises a V8 CPU profile (`node --cpu-prof` → *.cpuprofile): the top functions by self time
 * (with inclusive time), then self time per file and per area (src/, node_modules package, Node
 * internals, GC, idle). Locations in dist/ are mapped back to src/ through the tsc source maps.
 *
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile> [top=25]
 */
import { existsSync, readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

interface Fn {
  readonly name: string;
  readonly location: string;
  readonly area: string;
  self: number;
  total: number;
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const maps = new Map<string, SourceMap | null>();

function sourceMapFor(file: string): SourceMap | null {
  let map = maps.get(file);
  if (map === undefined) {
    map = null;
    const path = `${file}.map`;
    if (existsSync(path)) {
      try {
        map = new SourceMap(JSON.parse(readFileSync(path, 'utf8')) as SourceMapPayload);
      } catch {
        map = null;
      }
    }
    maps.set(file, map);
  }
  return map;
}

/** `file:line` (1-based), mapped to the TypeScript source when a source map exists. */
function locate(frame: CallFrame): { location: string; area: string } {
  const url = frame.url;
  if (url === '') return { location: '', area: areaOfName(frame.functionName) };
  if (url.startsWith('node:')) return { location: `${url}:${frame.lineNumber + 1}`, area: 'node internals' };
  const file = url.startsWith('file://') ? fileURLToPath(url) : url;
  let shown = relative(ROOT, file);
  let line = frame.lineNumber + 1;
  const map = sourceMapFor(file);
  if (map !== null && frame.lineNumber >= 0) {
    const e = map.findEntry(frame.lineNumber, frame.columnNumber);
    if ('originalSource' in e) {
      const src = e.originalSource.startsWith('file://')
        ? fileURLToPath(e.originalSource)
        : resolve(dirname(file), e.originalSource);
      shown = relative(ROOT, src);
      line = e.originalLine + 1;
    }
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(shown);
  const area =
    nm !== null
      ? `node_modules/${nm[1] ?? ''}`
      : shown.startsWith('src/')
        ? 'src'
        : (shown.split('/')[0] ?? '');
  return { location: `${shown}:${line}`, area };
}

function areaOfName(name: string): string {
  if (name === '(garbage collector)') return 'GC';
  if (name === '(idle)') return 'idle';
  if (name === '(program)') return 'program (native, unattributed)';
  return 'native';
}

export function analyse(profile: CpuProfile): { fns: Fn[]; totalUs: number } {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const fnOfNode = new Map<number, Fn>();
  const fns = new Map<string, Fn>();
  for (const n of profile.nodes) {
    const { location, area } = locate(n.callFrame);
    const name = n.callFrame.functionName === '' ? '(anonymous)' : n.callFrame.functionName;
    const key = `${name}\u0000${location}`;
    let fn = fns.get(key);
    if (fn === undefined) {
      fn = { name, location, area, self: 0, total: 0 };
      fns.set(key, fn);
    }
    fnOfNode.set(n.id, fn);
  }
  let totalUs = 0;
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    // A sample lasts until the next one; the last one until the end of the profile.
    const next = timeDeltas[i + 1];
    const dt = next !== undefined ? next : 0;
    if (dt <= 0) continue;
    totalUs += dt;
    const id = samples[i] as number;
    const self = fnOfNode.get(id);
    if (self !== undefined) self.self += dt;
    // Inclusive time: each function once per sample, however deep the recursion.
    const seen = new Set<Fn>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const fn = fnOfNode.get(cur);
      if (fn !== undefined && !seen.has(fn)) {
        seen.add(fn);
        fn.total += dt;
      }
    }
  }
  return { fns: [...fns.values()], totalUs };
}

const pct = (x: number, of: number): string => `${((100 * x) / of).toFixed(1).padStart(5)}%`;
const ms = (us: number): string => `${(us / 1000).toFixed(0).padStart(7)} ms`;

/** The printable summary of one .cpuprofile file. */
export function summarizeProfile(path: string, top = 25): string {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const { fns, totalUs } = analyse(profile);
  const idle = fns.filter((f) => f.name === '(idle)').reduce((a, f) => a + f.self, 0);
  const busy = totalUs - idle;
  const out: string[] = [];
  out.push(`${path}`);
  out.push(`profiled ${ms(totalUs).trim()}, busy ${ms(busy).trim()} (percentages are of busy time)`);
  out.push('', `Top ${top} functions by self time:`);
  out.push(`  ${'self'.padStart(10)} ${'self%'.padStart(6)} ${'total%'.padStart(6)}  function  (location)`);
  const ranked = fns
    .filter((f) => f.name !== '(idle)' && f.name !== '(root)')
    .sort((a, b) => b.self - a.self);
  for (const f of ranked.slice(0, top)) {
    out.push(
      `  ${ms(f.self)} ${pct(f.self, busy)} ${pct(f.total, busy)}  ${f.name}${f.location === '' ? '' : `  (${f.location})`}`,
    );
  }
  const group = (key: (f: Fn) => string): Array<[string, number]> => {
    const m = new Map<string, number>();
    for (const f of ranked) m.set(key(f), (m.get(key(f)) ?? 0) + f.self);
    return [...m.entries()].sort((a, b) => b[1] - a[1]);
  };
  out.push('', 'Self time by area:');
  for (const [area, us] of group((f) => f.area).slice(0, 15))
    out.push(`  ${ms(us)} ${pct(us, busy)}  ${area}`);
  out.push('', 'Self time by file (top 15):');
  const files = group((f) => f.location.replace(/:\d+$/, '') || f.area);
  for (const [file, us] of files.slice(0, 15)) out.push(`  ${ms(us)} ${pct(us, busy)}  ${file}`);
  out.push('', 'Inclusive time of gateway functions (src/, top 20):');
  const src = fns.filter((f) => f.area === 'src').sort((a, b) => b.total - a.total);
  for (const f of src.slice(0, 20)) out.push(`  ${pct(f.total, busy)}  ${f.name}  (${f.location})`);
  return out.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [file, topArg] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: node --import tsx bench/profile-summary.ts <file.cpuprofile> [top=25]\n');
    process.exit(2);
  }
  process.stdout.write(`${summarizeProfile(file, topArg === undefined ? 25 : Number(topArg))}\n`);
}
