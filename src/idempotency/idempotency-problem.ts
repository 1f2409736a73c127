import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Optional } from '@nestjs/common';
import { HttpPlatformHost } from '../platform/http-platform.host';
import type { PlatformResponse } from '../platform/http-platform';
import { IdempotentReplay } from './idempotency-replay';

export type IdempotencyProblemCode =
  'key-required' | 'key-invalid' | 'key-reused' | 'in-progress' | 'store-unavailable';

const TITLES: Record<IdempotencyProblemCode, [number, string]> = {
  'key-required': [400, 'Idempotency-Key required'],
  'key-invalid': [400, 'Invalid Idempotency-Key'],
  'key-reused': [422, 'Idempotency-Key reused for a different request'],
  'in-progress': [409, 'A request with this Idempotency-Key is in progress'],
  'store-unavailable': [503, 'Idempotency store unavailable'],
};

const REPLAYED = Object.freeze({ 'Idempotent-Replayed': 'true' });

/** An RFC 9457 problem, written as `application/problem+json` by {@link IdempotencyProblemFilter}. */
export class IdempotencyProblem extends HttpException {
  constructor(
    readonly code: IdempotencyProblemCode,
    detail: string,
    /** Sent as `Retry-After`. */
    readonly retryAfterSeconds?: number,
  ) {
    const [status, title] = TITLES[code];
    super({ type: `urn:nestjs-durable-sse:idempotency:${code}`, title, status, detail }, status);
  }
}

/**
 * Writes replays (the stored bytes) and idempotency problems itself, as exact bytes: platform
 * adapters rewrite error bodies (Nest's reset a non-JSON content type to `application/json`).
 * Attached by `@Idempotent()`, so it only sees its routes; instantiated in each controller's
 * module, where the platform is reached through DI.
 */
@Catch(IdempotencyProblem, IdempotentReplay)
export class IdempotencyProblemFilter implements ExceptionFilter {
  // Optional: without SseModule the route fails at start-up with the pipe's clearer message.
  constructor(@Optional() private readonly platforms?: HttpPlatformHost) {}

  catch(problem: IdempotencyProblem | IdempotentReplay, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<PlatformResponse>();
    const { platform } = this.platforms!;
    if (problem instanceof IdempotentReplay) {
      const { stored } = problem;
      platform.send(
        response,
        stored.status,
        stored.headers,
        stored.kind === 'base64' ? Buffer.from(stored.body, 'base64') : stored.body,
        REPLAYED,
      );
      return;
    }
    const headers: Record<string, string> = { 'Content-Type': 'application/problem+json' };
    if (problem.retryAfterSeconds !== undefined)
      headers['Retry-After'] = String(problem.retryAfterSeconds);
    platform.send(response, problem.getStatus(), headers, JSON.stringify(problem.getResponse()));
  }
}
