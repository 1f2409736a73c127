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
 * JSON with object keys sorted (recursively) and array order kept, so `{"a":1,"b":2}` and
 * `{"b":2,"a":1}` are one request while `[1,2]` and `[2,1]` are two.
 */
export function canonicalJson(value: unknown): string {
  if (value === undefined) return '';
  return JSON.stringify(sortKeys(value)) ?? '';
}

function sortKeys(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function')
    return sortKeys((value as { toJSON(): unknown }).toJSON());
  if (Array.isArray(value)) return value.map(sortKeys);
  if (Buffer.isBuffer(value)) return value.toString('base64');
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const item = (value as Record<string, unknown>)[key];
    if (item !== undefined) sorted[key] = sortKeys(item);
  }
  return sorted;
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
