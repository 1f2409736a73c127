import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { IdempotentReplay, writeReplay } from './idempotency-replay';

export type IdempotencyProblemCode =
  'key-required' | 'key-invalid' | 'key-reused' | 'in-progress' | 'store-unavailable';

const TITLES: Record<IdempotencyProblemCode, [number, string]> = {
  'key-required': [400, 'Idempotency-Key required'],
  'key-invalid': [400, 'Invalid Idempotency-Key'],
  'key-reused': [422, 'Idempotency-Key reused for a different request'],
  'in-progress': [409, 'A request with this Idempotency-Key is in progress'],
  'store-unavailable': [503, 'Idempotency store unavailable'],
};

/** An RFC 9457 problem, written as `application/problem+json` by {@link IdempotencyProblemFilter}. */
export class IdempotencyProblem extends HttpException {
  constructor(
    readonly code: IdempotencyProblemCode,
    detail: string,
  ) {
    const [status, title] = TITLES[code];
    super({ type: `urn:nestjs-durable-sse:idempotency:${code}`, title, status, detail }, status);
  }

  prepare(response: ServerResponse, retryAfterSeconds?: number): this {
    if (!response.headersSent && retryAfterSeconds !== undefined) {
      response.setHeader('Retry-After', String(retryAfterSeconds));
    }
    return this;
  }
}

/**
 * Writes replays (the stored bytes) and idempotency problems itself: Nest's Express adapter
 * resets any non-JSON content type of an error body to `application/json`. Attached by
 * `@Idempotent()`, so it only sees its routes.
 */
@Catch(IdempotencyProblem, IdempotentReplay)
export class IdempotencyProblemFilter implements ExceptionFilter {
  catch(problem: IdempotencyProblem | IdempotentReplay, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<ServerResponse>();
    if (response.headersSent) {
      response.end();
      return;
    }
    if (problem instanceof IdempotentReplay) return writeReplay(response, problem.stored);
    response.statusCode = problem.getStatus();
    response.setHeader('Content-Type', 'application/problem+json');
    response.end(JSON.stringify(problem.getResponse()));
  }
}
