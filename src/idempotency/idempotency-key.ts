/**
 * The `Idempotency-Key` header (IETF draft "The Idempotency-Key HTTP Header Field"): an RFC 8941
 * structured-field string (`"abc"`), or, as many clients send it, a bare token (`abc`). Both name
 * the same key.
 */
export type ParsedIdempotencyKey =
  { ok: true; key: string } | { ok: false; reason: 'missing' | 'empty' | 'too-long' | 'invalid' };

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

export function parseIdempotencyKey(
  header: string | string[] | undefined,
  maxLength: number,
): ParsedIdempotencyKey {
  if (header === undefined) return { ok: false, reason: 'missing' };
  // Several header lines are several keys: ambiguous, so invalid.
  if (Array.isArray(header))
    return header.length === 1
      ? parseIdempotencyKey(header[0], maxLength)
      : { ok: false, reason: 'invalid' };
  const raw = header.trim();
  let key: string;
  if (raw.startsWith('"')) {
    const unquoted = unquoteSfString(raw);
    if (unquoted === undefined) return { ok: false, reason: 'invalid' };
    key = unquoted;
  } else {
    key = raw;
  }
  if (key.length === 0) return { ok: false, reason: 'empty' };
  if (key.length > maxLength) return { ok: false, reason: 'too-long' };
  if (!PRINTABLE_ASCII.test(key)) return { ok: false, reason: 'invalid' };
  return { ok: true, key };
}

/** RFC 8941 §4.2.5: `"` … `"` with `\"` and `\\` as the only escapes. */
function unquoteSfString(value: string): string | undefined {
  if (value.length < 2 || !value.endsWith('"')) return undefined;
  let out = '';
  for (let i = 1; i < value.length - 1; i++) {
    const char = value[i];
    if (char === '\\') {
      const next = value[++i];
      if (next !== '"' && next !== '\\') return undefined;
      out += next;
    } else if (char === '"') {
      return undefined;
    } else {
      out += char;
    }
  }
  return out;
}

/**
 * The lines of header `lowerName` as the client sent them: `undefined` (none), the value (one),
 * or every value (several). Node joins repeated lines of headers it does not know into one
 * `"a, b"`, which would read as a single key containing a comma; `rawHeaders` keeps them apart.
 */
export function headerLines(
  request: { headers: Record<string, string | string[] | undefined>; rawHeaders?: string[] },
  lowerName: string,
): string | string[] | undefined {
  const joined = request.headers[lowerName];
  const raw = request.rawHeaders;
  if (joined === undefined || !raw) return joined;
  const lines: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === lowerName.length && raw[i].toLowerCase() === lowerName)
      lines.push(raw[i + 1]);
  }
  return lines.length === 1 ? lines[0] : lines.length === 0 ? joined : lines;
}
