import { HttpException } from '@nestjs/common';
import type { PlatformResponse } from '../platform/http-platform';
import type { HttpPlatformHost } from '../platform/http-platform.host';
import type { SseStreamer } from '../sse/sse-streamer';

/**
 * How job and chat routes refuse (a stream or job slot, a resume past `sse.resumesPerSecond`, a
 * Redis that did not answer): `Retry-After` — the admission's own when it computed one, else
 * `sse.rejectRetryMs` jittered — then the status.
 */
export class JobRefusals {
  constructor(
    private readonly platforms: HttpPlatformHost,
    private readonly streamer: SseStreamer,
  ) {}

  refuse(response: PlatformResponse, status: 503 | 429, reason: string, afterMs?: number): never {
    this.retryAfter(response, afterMs);
    throw new HttpException(reason, status);
  }

  retryAfter(response: PlatformResponse, afterMs = this.streamer.jitteredBackoffMs()): void {
    this.platforms.platform.setHeader(response, 'Retry-After', String(Math.ceil(afterMs / 1000)));
  }
}

/** A job stream's `Last-Event-ID`: the number of the last event the client has (0: none). */
export function parseJobEventId(value: string | undefined): number {
  const n = value === undefined ? 0 : Number(value);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}
