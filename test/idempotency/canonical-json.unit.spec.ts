import { canonicalJson } from '../../src/idempotency/fingerprint';

/** What earlier versions did (recursive): records they stored must keep matching. */
function recursiveCanonicalJson(value: unknown): string {
  const sortKeys = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object') return v;
    if (typeof (v as { toJSON?: unknown }).toJSON === 'function')
      return sortKeys((v as { toJSON(): unknown }).toJSON());
    if (Array.isArray(v)) return v.map(sortKeys);
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(v).sort()) {
      const item = (v as Record<string, unknown>)[key];
      if (item !== undefined) sorted[key] = sortKeys(item);
    }
    return sorted;
  };
  if (value === undefined) return '';
  return JSON.stringify(sortKeys(value)) ?? '';
}

/** A small deterministic PRNG (mulberry32), so a failure names a seed that reproduces it. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYS = ['a', 'b', 'B', 'é', '0', '1', '9', '10', '01', '-1', '1.5', '4294967295', 'z', ''];
const LEAVES: unknown[] = [
  0,
  -1.5,
  1e21,
  NaN,
  Infinity,
  'text',
  'quote " and \\ and \u2028',
  '',
  true,
  false,
  null,
  undefined,
  () => 1,
  Symbol('s'),
  new Date(0),
  Buffer.from('hi'),
  { toJSON: () => ({ y: 1, x: [2] }) },
  { toJSON: () => undefined },
];

function value(next: () => number, depth: number): unknown {
  const pick = next();
  if (depth > 4 || pick < 0.4) return LEAVES[Math.floor(next() * LEAVES.length)];
  const size = Math.floor(next() * 5);
  if (pick < 0.7) return Array.from({ length: size }, () => value(next, depth + 1));
  const object: Record<string, unknown> = {};
  for (let i = 0; i < size; i++)
    object[KEYS[Math.floor(next() * KEYS.length)]] = value(next, depth + 1);
  return object;
}

describe('canonicalJson (the fingerprint of a request body)', () => {
  it('writes what the recursive version wrote, for 2,000 random bodies', () => {
    for (let seed = 1; seed <= 2_000; seed++) {
      const body = value(random(seed), 0);
      expect([seed, canonicalJson(body)]).toEqual([seed, recursiveCanonicalJson(body)]);
    }
  });

  it('sorts keys at every depth and keeps array order; integer-like keys first, as objects enumerate them', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,1]},"b":1}',
    );
    expect(canonicalJson({ a: 1, 10: 2, 9: 3 })).toBe('{"9":3,"10":2,"a":1}');
    expect(canonicalJson(undefined)).toBe('');
  });

  it('takes a body nested 100,000 deep (client input must not reach a stack overflow)', () => {
    const depth = 100_000;
    const text = '['.repeat(depth) + ']'.repeat(depth);
    expect(canonicalJson(JSON.parse(text))).toBe(text);
    let nested: unknown = 1;
    for (let i = 0; i < depth; i++) nested = { a: nested };
    expect(canonicalJson(nested)).toHaveLength(depth * 6 + 1);
  });

  it('refuses a circular value, as JSON.stringify does', () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = { back: loop };
    expect(() => canonicalJson(loop)).toThrow(/circular/);
    // The same object twice, not inside itself, is no cycle.
    const shared = { x: 1 };
    expect(canonicalJson([shared, shared])).toBe('[{"x":1},{"x":1}]');
  });
});
