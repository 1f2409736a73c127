// The shape of src/ that lets a reader find each thing by its name (issue 24, "rooms"): no file
// import circles, no file over 400 lines but the option table, and the layers that must not
// reach into each other don't. Read from the sources themselves (relative imports, type-only
// ones included: a circle of types is still a circle for the reader).
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';

const SRC = path.join(__dirname, '../../src');
const MAX_LINES = 400;
/** Generated-looking tables a reader scans rather than reads. */
const LONG_ALLOWED = new Set(['config/option-definitions.ts']);

function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

const rel = (file: string) => path.relative(SRC, file).split(path.sep).join('/');

/** The files of src/ each file imports (relative specifiers only). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles()) {
    const text = readFileSync(file, 'utf8');
    const targets: string[] = [];
    for (const match of text.matchAll(/(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gs)) {
      const base = path.resolve(path.dirname(file), match[1]);
      const target = [`${base}.ts`, path.join(base, 'index.ts')].find((f) => existsSync(f));
      if (target) targets.push(rel(target));
    }
    graph.set(rel(file), targets);
  }
  return graph;
}

/** Every import circle, as the files on it (Tarjan's strongly connected components). */
function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v)?.includes(v)) found.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('the layout of src/', () => {
  const graph = importGraph();

  it('reads the imports it checks (a broken reader would pass everything)', () => {
    expect(graph.size).toBeGreaterThan(50);
    expect(graph.get('outbox/read/outbox-relay.ts')).toContain('outbox/store/outbox-store.ts');
    expect(
      circles(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', ['a']],
          ['d', ['a']],
        ]),
      ),
    ).toEqual([['a', 'b', 'c']]);
  });

  it('has no file import circles', () => {
    expect(circles(graph)).toEqual([]);
  });

  it(`has no file over ${MAX_LINES} lines but the option table`, () => {
    const long = sourceFiles()
      .map((file) => ({
        file: rel(file),
        lines: readFileSync(file, 'utf8').split('\n').length - 1,
      }))
      .filter(({ file, lines }) => lines > MAX_LINES && !LONG_ALLOWED.has(file));
    expect(long).toEqual([]);
  });

  it('keeps the layers apart: connections below everything, health off idempotency, the read side off the write side', () => {
    const imports = (from: string, to: string) =>
      [...graph]
        .filter(([file]) => file.startsWith(from))
        .flatMap(([file, targets]) =>
          targets.filter((t) => t.startsWith(to)).map((t) => `${file} -> ${t}`),
        );
    for (const layer of ['outbox/', 'idempotency/', 'health/', 'jobs/', 'sse/'])
      expect(imports('connections/', layer)).toEqual([]);
    expect(imports('health/', 'idempotency/')).toEqual([]);
    // The relay, feed and retention reach the table through the store, not the user-facing service.
    expect(imports('outbox/read/', 'outbox/write/outbox.service.ts')).toEqual([]);
    expect(imports('outbox/store/', 'outbox/write/')).toEqual([]);
    expect(imports('outbox/store/', 'outbox/read/')).toEqual([]);
  });
});
