import { SseLogger } from '../observability/sse-logger';
import { Inject, Injectable } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions, SseRejectMode } from '../config/sse-module-options';
import { SseConnection } from './sse-connection';
import { SseAdmission, SseConnectionRegistry, SseSlot } from './sse-connection-registry';
import { SSE_CLIENT_KEY_RESOLVER, SseClientKeyResolver } from './sse-client-key-resolver';
import { encodeComment, encodeRetry } from './sse-encoder';
import { SSE_FEED, SseFeed } from './sse-feed';
import { toSseEvent } from './sse-event';
import { assertTopic, SseHub } from './sse-hub';
import { readLastEventId, SseRequest, SseRouteOptions, SseTopics } from './sse-route-options';
import { HttpPlatformHost } from '../platform/http-platform.host';
import { ResumeAdmission } from './resume-admission';
import type { PlatformResponse } from '../platform/http-platform';

export const SSE_RESPONSE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  // nginx buffers proxied responses unless told not to
  'X-Accel-Buffering': 'no',
});

/** What a stream is fed from once it is open. */
export type SseSource =
  | { kind: 'observable'; events: Observable<unknown> }
  | { kind: 'topics'; topics: string[] }
  /** Fed by its owner (a job stream): given the connection once it is open. */
  | { kind: 'attach'; attach: (connection: SseConnection) => void };

/** Opens event streams on HTTP responses and feeds them; also writes refusals. */
@Injectable()
export class SseStreamer {
  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly registry: SseConnectionRegistry,
    private readonly hub: SseHub,
    @Inject(SSE_CLIENT_KEY_RESOLVER) private readonly clientKeys: SseClientKeyResolver,
    @Inject(SSE_FEED) private readonly feed: SseFeed,
    private readonly platforms: HttpPlatformHost,
    private readonly logger: SseLogger,
  ) {
    this.resumes = new ResumeAdmission(options.sse.resumesPerSecond);
  }

  private readonly resumes: ResumeAdmission;

  /**
   * Resolves the client key and reserves a slot under the connection limits; a resume
   * (`Last-Event-ID`) also under `sse.resumesPerSecond`.
   */
  async admit(request: SseRequest): Promise<{ clientKey: string; admission: SseAdmission }> {
    const clientKey = String(await this.clientKeys.resolve(request));
    if (readLastEventId(request) !== undefined) {
      const resume = this.resumes.take();
      if (!resume.admitted) {
        const admission: SseAdmission = {
          admitted: false,
          status: 503,
          reason: 'resume-rate',
          retryAfterMs: resume.retryAfterMs,
        };
        return { clientKey, admission };
      }
    }
    return { clientKey, admission: this.registry.admit(clientKey) };
  }

  rejectModeOf(route: SseRouteOptions): SseRejectMode {
    return route.rejectMode ?? this.options.sse.rejectMode;
  }

  /**
   * Writes the headers and `retry:` preamble, then connects the source. Returns undefined when
   * the client left while the handler was running (the slot is released).
   */
  open(
    request: SseRequest,
    response: PlatformResponse,
    clientKey: string,
    slot: SseSlot,
    source: SseSource,
    headers?: Record<string, string>,
  ) {
    const { platform } = this.platforms;
    const raw = platform.takeOver(response);
    if (raw.destroyed || raw.writableEnded) {
      slot.release();
      return undefined;
    }
    const { socket, method } = platform.rawRequest(request);
    if (method === 'HEAD') {
      // Both platforms route HEAD to GET handlers; a stream without a body would only hold a slot.
      raw.writeHead(200, SSE_RESPONSE_HEADERS);
      raw.end();
      slot.release();
      return undefined;
    }
    socket.setTimeout(0);
    socket.setNoDelay(true);
    raw.writeHead(200, headers ? { ...SSE_RESPONSE_HEADERS, ...headers } : SSE_RESPONSE_HEADERS);
    // Sent at once so clients see the stream open before the first event. Flushing the head on
    // its own also lets V8 flatten the header string, which otherwise stays a rope of ~25
    // pieces (~800 bytes) for the life of every connection.
    raw.flushHeaders();
    const { retryMs, retryJitterMs } = this.options.sse;
    raw.write(
      encodeRetry(
        retryJitterMs > 0 ? retryMs + Math.floor(Math.random() * retryJitterMs) : retryMs,
      ),
    );

    const connection = this.registry.open(raw, clientKey, slot);
    if (source.kind === 'topics')
      this.feed.attach(connection, source.topics, readLastEventId(request));
    else if (source.kind === 'attach') source.attach(connection);
    else this.connectObservable(connection, source.events);
    platform.release(request);
    return connection;
  }

  /** Resolves and validates a route's topics. Returns a message for invalid client-derived input. */
  async resolveTopics(
    topic: SseTopics | ((request: SseRequest) => SseTopics | Promise<SseTopics>),
    request: SseRequest,
  ): Promise<string[]> {
    const value = typeof topic === 'function' ? await topic(request) : topic;
    const list = typeof value === 'string' ? [value] : [...(value ?? [])];
    if (list.length === 0) throw new TypeError('@Sse topic resolved to no topic');
    list.forEach((t) => assertTopic(t));
    return [...new Set(list)];
  }

  /**
   * Refuses a stream. `'status'` answers 503/429 through Nest's exception layer (the caller
   * throws); `'retry'` answers 200 with a jittered `retry:` and closes, since browsers'
   * EventSource gives up for good on any non-200 response.
   */
  refuse(
    response: PlatformResponse,
    reason: string,
    mode: SseRejectMode,
    backoffMs = this.jitteredBackoffMs(),
  ): void {
    const { platform } = this.platforms;
    if (mode === 'status') {
      platform.setHeader(response, 'Retry-After', String(Math.ceil(backoffMs / 1000)));
      return;
    }
    const raw = platform.takeOver(response);
    raw.writeHead(200, SSE_RESPONSE_HEADERS);
    raw.end(encodeRetry(backoffMs) + encodeComment(`rejected: ${reason}`));
  }

  /** `sse.rejectRetryMs` plus up to as much again, so refused clients do not return together. */
  jitteredBackoffMs(): number {
    const base = this.options.sse.rejectRetryMs;
    return base + Math.floor(Math.random() * base);
  }

  private connectObservable(connection: SseConnection, events: Observable<unknown>): void {
    const subscription = events.subscribe({
      next: (value) => {
        const event = toSseEvent(value);
        let frame: string;
        try {
          frame = this.hub.encode(event);
        } catch (error) {
          // The stream is open: a bad event is a server bug, not a reason to cut the client.
          this.logger.report(
            'sse.unframeable-event',
            `Dropped an SSE event that cannot be framed: ${(error as Error).message}`,
          );
          return;
        }
        connection.write(frame);
      },
      error: (error) => {
        this.logger.report(
          'sse.source-failed',
          `SSE stream source failed: ${(error as Error)?.message ?? error}`,
          { stack: (error as Error)?.stack },
        );
        connection.close('error');
      },
      complete: () => connection.close('complete'),
    });
    connection.onTeardown(() => subscription.unsubscribe());
  }
}
