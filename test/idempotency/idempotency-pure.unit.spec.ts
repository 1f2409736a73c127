import { createHash } from 'node:crypto';
import { Sha256FingerprintStrategy } from '../../src';
import { canonicalJson, sha256Parts } from '../../src/idempotency/fingerprint';
import { parseIdempotencyKey } from '../../src/idempotency/idempotency-key';

describe('Idempotency-Key parsing', () => {
  it('takes a structured-field string and a bare token as the same key', () => {
    expect(parseIdempotencyKey('"abc-123"', 255)).toEqual({ ok: true, key: 'abc-123' });
    expect(parseIdempotencyKey('abc-123', 255)).toEqual({ ok: true, key: 'abc-123' });
    expect(parseIdempotencyKey('"a \\"quoted\\" \\\\ key"', 255)).toEqual({
      ok: true,
      key: 'a "quoted" \\ key',
    });
  });

  it.each([
    [undefined, 'missing'],
    ['', 'empty'],
    ['""', 'empty'],
    ['x'.repeat(256), 'too-long'],
    ['"unterminated', 'invalid'],
    ['"bad \\n escape"', 'invalid'],
    ['"inner " quote"', 'invalid'],
    ['tab\there', 'invalid'],
    ['é', 'invalid'],
  ])('rejects %p as %s', (header, reason) => {
    expect(parseIdempotencyKey(header as string | undefined, 255)).toEqual({ ok: false, reason });
  });

  it('accepts a key of exactly the maximum length, and one header line only', () => {
    expect(parseIdempotencyKey('x'.repeat(255), 255).ok).toBe(true);
    expect(parseIdempotencyKey(['a'], 255)).toEqual({ ok: true, key: 'a' });
    expect(parseIdempotencyKey(['a', 'b'], 255)).toEqual({ ok: false, reason: 'invalid' });
  });
});

describe('fingerprints', () => {
  it('sorts object keys and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, 1], c: null } })).toBe(
      '{"a":{"c":null,"d":[2,1]},"b":1}',
    );
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
    expect(canonicalJson(undefined)).toBe('');
  });

  it('length-prefixes parts so moving a separator changes the hash', () => {
    expect(sha256Parts('a:b', 'c')).not.toBe(sha256Parts('a', 'b:c'));
    expect(sha256Parts('ab', '')).not.toBe(sha256Parts('a', 'b'));
  });

  it('hashes `<byte length>:<utf-8 bytes>` of each part, so stored fingerprints stay valid', () => {
    const parts = ['tenant-ä', 'POST', '/orders?x=1', '{"item":"☕"}'];
    const reference = createHash('sha256');
    for (const part of parts) {
      const bytes = Buffer.from(part, 'utf8');
      reference.update(`${bytes.length}:`).update(bytes);
    }
    expect(sha256Parts(...parts)).toBe(reference.digest('base64url'));
  });

  it('hashes scope, method, URL and canonical body', () => {
    const strategy = new Sha256FingerprintStrategy();
    const base = { scope: 'u1', method: 'post', url: '/orders', body: { a: 1, b: [1, 2] } };
    const same = strategy.fingerprint({ ...base, method: 'POST', body: { b: [1, 2], a: 1 } });
    expect(strategy.fingerprint(base)).toBe(same);
    for (const changed of [
      { ...base, scope: 'u2' },
      { ...base, method: 'PUT' },
      { ...base, url: '/orders?x=1' },
      { ...base, body: { a: 1, b: [2, 1] } },
    ]) {
      expect(strategy.fingerprint(changed)).not.toBe(same);
    }
  });
});
