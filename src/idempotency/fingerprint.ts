import { hash } from 'node:crypto';

/** What a request is made of, for deciding whether a retry is "the same request". */
export interface FingerprintInput {
  scope: string;
  method: string;
  /** The concrete URL, path and query (`req.originalUrl`). */
  url: string;
  body: unknown;
}

/** Pluggable by the `IDEMPOTENCY_FINGERPRINT_STRATEGY` token. */
export interface FingerprintStrategy {
  fingerprint(input: FingerprintInput): string | Promise<string>;
}

export const IDEMPOTENCY_FINGERPRINT_STRATEGY = Symbol('IDEMPOTENCY_FINGERPRINT_STRATEGY');

/**
 * JSON with object keys sorted (at every depth) and array order kept, so `{"a":1,"b":2}` and
 * `{"b":2,"a":1}` are one request while `[1,2]` and `[2,1]` are two.
 *
 * Written without recursion: a request body is client input, and one nested 5,000 deep (10 kB
 * of JSON, which body parsers accept) overflowed the stack of a recursive walk — a 500 for a
 * request the route itself would have served. The output is byte for byte what
 * `JSON.stringify` made of the recursively sorted value before (so records stored by earlier
 * versions still match): `toJSON()` is honoured, `undefined`, functions and symbols are left
 * out of objects and become `null` in arrays, and integer-like keys come first in numeric
 * order, as JavaScript objects enumerate them.
 */
export function canonicalJson(value: unknown): string {
  const parts: string[] = [];
  const stack: Frame[] = [];
  /** Objects and arrays being written: meeting one again is a cycle. */
  const open = new Set<object>();
  /** Writes `v` (resolved), or opens it; false when it has no JSON form. */
  const write = (v: unknown): boolean => {
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') return false;
    if (v === null || typeof v !== 'object') {
      parts.push(JSON.stringify(v));
      return true;
    }
    if (open.has(v)) throw new TypeError('Converting circular structure to JSON');
    open.add(v);
    if (Array.isArray(v)) {
      parts.push('[');
      stack.push({ of: v, items: v, i: 0, wrote: false });
    } else {
      const keys = objectKeys(v);
      parts.push('{');
      const record = v as Record<string, unknown>;
      stack.push({ of: v, keys, items: keys.map((key) => record[key]), i: 0, wrote: false });
    }
    return true;
  };
  if (!write(resolve(value))) return '';
  while (stack.length > 0) {
    const frame = stack[stack.length - 1];
    if (frame.i === frame.items.length) {
      parts.push(frame.keys ? '}' : ']');
      open.delete(frame.of);
      stack.pop();
      continue;
    }
    const i = frame.i++;
    const item = resolve(frame.items[i]);
    if (!frame.keys) {
      if (frame.wrote) parts.push(',');
      frame.wrote = true;
      if (!write(item)) parts.push('null');
      continue;
    }
    if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
    parts.push(`${frame.wrote ? ',' : ''}${JSON.stringify(frame.keys[i])}:`);
    frame.wrote = true;
    write(item);
  }
  return parts.join('');
}

/** An object or array being written: its items (an object's values in key order), and where. */
interface Frame {
  of: object;
  /** An object's keys, in the order they are written; none for an array. */
  keys?: string[];
  items: unknown[];
  i: number;
  wrote: boolean;
}

/** `toJSON()` applied for as long as there is one (a `Date`, a `Buffer`, a class of the app's). */
function resolve(value: unknown): unknown {
  while (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
  )
    value = (value as { toJSON(): unknown }).toJSON();
  return value;
}

/** Array-index keys (`0` … `2^32 - 2`), which objects enumerate first, in numeric order. */
const isIndex = (key: string) => /^(?:0|[1-9]\d*)$/.test(key) && Number(key) < 4294967295;

/** Sorted keys, in the order an object built in sorted key order enumerates them. */
function objectKeys(value: object): string[] {
  const keys = Object.keys(value).sort();
  if (!keys.some(isIndex)) return keys;
  const indices = keys.filter(isIndex).sort((a, b) => Number(a) - Number(b));
  return [...indices, ...keys.filter((key) => !isIndex(key))];
}

/**
 * SHA-256 over the length-prefixed parts: no choice of parts can collide with another by moving
 * a separator (`a:b` + `c` vs `a` + `b:c`).
 */
export function sha256Parts(...parts: string[]): string {
  let input = '';
  for (const part of parts) input += `${Buffer.byteLength(part, 'utf8')}:${part}`;
  // One-shot hashing skips the Hash object and its per-update copies: this is on every
  // idempotent request's path. Same bytes, same digest as the streaming form.
  return hash('sha256', input, 'base64url');
}

export class Sha256FingerprintStrategy implements FingerprintStrategy {
  fingerprint({ scope, method, url, body }: FingerprintInput): string {
    return sha256Parts(scope, method.toUpperCase(), url, canonicalJson(body));
  }
}
