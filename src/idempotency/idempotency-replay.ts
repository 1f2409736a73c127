import { HttpException } from '@nestjs/common';
import { StoredResponse } from './idempotency-store';

/**
 * Thrown by an `@Idempotent()` handler whose key already has a stored response, and answered by
 * the filter `@Idempotent()` attaches to the route, which writes the stored bytes. It is an
 * exception so the replay skips whatever interceptors would map into a response body: what is
 * replayed is what went out the first time, after every interceptor and serializer. Interceptors
 * that watch errors see it; `instanceof IdempotentReplay` tells it apart (its status is the
 * replayed one).
 */
export class IdempotentReplay extends HttpException {
  readonly stored!: StoredResponse;

  /** Without a stack trace: a replay is a normal outcome, and capturing one is its main cost. */
  static of(stored: StoredResponse): IdempotentReplay {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      const replay = new IdempotentReplay('Idempotent replay', stored.status);
      (replay as { stored: StoredResponse }).stored = stored;
      return replay;
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}
