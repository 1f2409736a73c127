import { SseEventError } from '../../src';
import { encodeComment, encodeEvent, encodeRetry } from '../../src/sse/sse-encoder';

describe('SSE encoding (WHATWG framing)', () => {
  it('writes id, event and one data line per payload line, then a blank line', () => {
    expect(encodeEvent({ id: '42', type: 'order.created', data: '{"a":1}' })).toBe(
      'id: 42\nevent: order.created\ndata: {"a":1}\n\n',
    );
  });

  it('splits data on LF, CRLF and lone CR so no line break can end the event early', () => {
    expect(encodeEvent({ data: 'a\nb\r\nc\rd' })).toBe('data: a\ndata: b\ndata: c\ndata: d\n\n');
  });

  it('keeps empty lines of data as empty data lines (the client rejoins them with LF)', () => {
    expect(encodeEvent({ data: '\n' })).toBe('data: \ndata: \n\n');
    expect(encodeEvent({ data: '' })).toBe('data: \n\n');
  });

  it('encodes retry as an integer field', () => {
    expect(encodeEvent({ data: 'x', retry: 1500 })).toBe('retry: 1500\ndata: x\n\n');
    expect(encodeRetry(3000)).toBe('retry: 3000\n\n');
  });

  it.each([
    ['id', { id: 'a\nid: evil', data: 'x' }],
    ['id', { id: 'a\rb', data: 'x' }],
    ['id', { id: 'a\0b', data: 'x' }],
    ['type', { type: 'a\ndata: forged', data: 'x' }],
    ['type', { type: 'a\r\n', data: 'x' }],
    ['type', { type: '\0', data: 'x' }],
  ])('rejects CR, LF or NUL in %s', (_field, event) => {
    expect(() => encodeEvent(event)).toThrow(SseEventError);
  });

  it.each([-1, 1.5, NaN, Infinity])('rejects retry %p', (retry) => {
    expect(() => encodeEvent({ data: 'x', retry })).toThrow(SseEventError);
  });

  it('prefixes every line of a comment with a colon', () => {
    expect(encodeComment('a\nb')).toBe(': a\n: b\n\n');
  });
});
