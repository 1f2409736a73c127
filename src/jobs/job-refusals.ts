import { HttpException } from '@nestjs/common';
import type { PlatformResponse } from '../platform/http-platform';
import type { HttpPlatformHost } from '../platform/http-platform.host';
import type { SseSlot } from '../sse/sse-connection-registry';
import type { SseRequest } from '../sse/sse-route-options';
import type { SseStreamer } from '../sse/sse-streamer';

/**
 * How job and chat routes take a stream slot, and refuse (no stream or job slot, a resume past
 * `sse.resumesPerSecond`, a Redis that did not answer): `Retry-After` — the admission's own when it computed one, else
 * `sse.rejectRetryMs` jittered — then the status.
 */
export class JobRefusals {
  constructor(
    private readonly platforms: HttpPlatformHost,
    private readonly streamer: SseStreamer,
  ) {}

  /** A stream slot for `request` under the connection limits and the resume rate, or the refusal. */
  async admitStream(
    request: SseRequest,
    response: PlatformResponse,
  ): Promise<{ clientKey: string; slot: SseSlot }> {
    const { clientKey, admission } = await this.streamer.admit(request);
    if (!admission.admitted) {
      this.refuse(response, admission.status, admission.reason, admission.retryAfterMs);
    }
    return { clientKey, slot: admission.slot };
  }

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
