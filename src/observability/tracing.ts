import type * as OpenTelemetry from '@opentelemetry/api';

/**
 * OpenTelemetry spans through `@opentelemetry/api`, an optional peer dependency: without it, or
 * without an SDK registered, every function here returns at once and nothing is stored (the API's
 * no-op tracer hands out invalid span contexts, which are not propagated). Nothing of the API's
 * types leaks into the module's declarations, so apps without it compile as before.
 *
 * The trace context of an event travels with it: the registered propagator (W3C `traceparent`
 * with the SDK's defaults) injects the publish span's context into the outbox row's
 * `trace_context` column, the Redis Stream entry carries it, and each instance's relay extracts it
 * to parent and link the span that hands the event to its streams. One trace then shows the
 * request, its publish, and every instance's delivery.
 */
type Api = typeof OpenTelemetry;

const api: Api | undefined = load();

function load(): Api | undefined {
  try {
    // Optional peer dependency: loaded if installed, never required.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('@opentelemetry/api') as Api;
  } catch {
    return undefined;
  }
}

const TRACER = 'nestjs-durable-sse';
/** `messaging.system`: no registered value fits, so the library names itself (as semconv allows). */
const SYSTEM = 'nestjs-durable-sse';

function tracer(): OpenTelemetry.Tracer {
  // The global provider is looked up per span: an SDK registered after this module loaded (the
  // usual order in tests and in apps that start tracing late) is still used.
  return api!.trace.getTracer(TRACER);
}

/** Attribute names beyond the semantic conventions, under the library's own namespace. */
export const SSE_TRACE_ATTRIBUTES = Object.freeze({
  idempotencyOutcome: 'nestjs_durable_sse.idempotency.outcome',
  recordedResult: 'nestjs_durable_sse.idempotency.recorded_result',
  subscribers: 'nestjs_durable_sse.subscribers',
  replayedEvents: 'nestjs_durable_sse.stream.replayed_events',
  replayedFrom: 'nestjs_durable_sse.stream.replayed_from',
  resetReason: 'nestjs_durable_sse.stream.reset_reason',
  closeReason: 'nestjs_durable_sse.stream.close_reason',
});

/** A publish in progress: `context` is what to store with its rows (null: nothing to propagate). */
export interface PublishTrace {
  readonly context: string | null;
  end(ids: readonly string[] | undefined, error?: unknown): void;
}

/**
 * Starts the `publish <topic>` span (PRODUCER) in the caller's context, for `events` events of
 * `topics` stored in `collection` (`schema.table`). Undefined without the API.
 */
export function startPublish(
  topics: readonly string[],
  events: number,
  collection: string,
): PublishTrace | undefined {
  if (!api) return undefined;
  const single = topics.every((topic) => topic === topics[0]);
  const span = tracer().startSpan(single ? `publish ${topics[0]}` : 'publish', {
    kind: api.SpanKind.PRODUCER,
    attributes: {
      'messaging.system': SYSTEM,
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'publish',
      ...(single ? { 'messaging.destination.name': topics[0] } : {}),
      ...(events > 1 ? { 'messaging.batch.message_count': events } : {}),
      'db.system.name': 'postgresql',
      'db.collection.name': collection,
      'db.operation.name': 'INSERT',
    },
  });
  const context = api.trace.isSpanContextValid(span.spanContext())
    ? serialize(api.trace.setSpan(api.context.active(), span))
    : null;
  return {
    context,
    end(ids, error) {
      if (error !== undefined) fail(span, error);
      else if (ids?.length === 1) span.setAttribute('messaging.message.id', ids[0]);
      span.end();
    },
  };
}

/** The propagator's fields as `key=value` lines (Debezium's format for the same column), or null. */
function serialize(context: OpenTelemetry.Context): string | null {
  const carrier: Record<string, string> = {};
  api!.propagation.inject(context, carrier);
  const lines = Object.entries(carrier).map(([key, value]) => `${key}=${value}`);
  return lines.length > 0 ? lines.join('\n') : null;
}

function deserialize(text: string): OpenTelemetry.Context {
  const carrier: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) carrier[line.slice(0, at)] = line.slice(at + 1);
  }
  // From the root: nothing of whatever context the relay's read happens to run in comes along.
  return api!.propagation.extract(api!.ROOT_CONTEXT, carrier);
}

/** What one relay hand-over delivered of the events published under one trace context. */
export interface DeliveryGroup {
  context: string;
  topics: Set<string>;
  ids: string[];
  subscribers: number;
}

/** Whether delivery should collect groups at all (the API is there to report them to). */
export const tracingAvailable = (): boolean => api !== undefined;

/**
 * One `deliver <topic>` span (CONSUMER) per publish context, child of and linked to the publish
 * span it came from, from `startTime` (the hand-over's start) to now.
 */
export function recordDeliveries(groups: Iterable<DeliveryGroup>, startTime: number): void {
  if (!api) return;
  const now = Date.now();
  for (const group of groups) {
    const parent = deserialize(group.context);
    const linked = api.trace.getSpanContext(parent);
    if (!linked || !api.trace.isSpanContextValid(linked)) continue;
    const topics = [...group.topics];
    const span = tracer().startSpan(
      topics.length === 1 ? `deliver ${topics[0]}` : 'deliver',
      {
        kind: api.SpanKind.CONSUMER,
        startTime,
        links: [{ context: linked }],
        attributes: {
          'messaging.system': SYSTEM,
          'messaging.operation.type': 'process',
          'messaging.operation.name': 'deliver',
          ...(topics.length === 1 ? { 'messaging.destination.name': topics[0] } : {}),
          ...(group.ids.length === 1
            ? { 'messaging.message.id': group.ids[0] }
            : { 'messaging.batch.message_count': group.ids.length }),
          [SSE_TRACE_ATTRIBUTES.subscribers]: group.subscribers,
        },
      },
      parent,
    );
    span.end(now);
  }
}

/** Sets attributes on the span active where it is called (the request's, under an HTTP instrumentation). */
export function annotateActive(attributes: Record<string, string | number | boolean>): void {
  if (!api) return;
  const span = api.trace.getActiveSpan();
  if (span?.isRecording()) span.setAttributes(attributes);
}

/** The span of one SSE stream, from open to close, with its replay and reset as events. */
export interface StreamTrace {
  event(name: 'replay' | 'reset', attributes: Record<string, string | number>): void;
  end(reason: string): void;
}

/** Starts a stream's span in the current (request) context; undefined when nothing records it. */
export function startStream(): StreamTrace | undefined {
  if (!api) return undefined;
  const span = tracer().startSpan('sse stream', { kind: api.SpanKind.INTERNAL });
  // Held for the stream's whole life: only worth it when something records it.
  if (!span.isRecording()) return undefined;
  const status = api.SpanStatusCode;
  return {
    event: (name, attributes) => span.addEvent(name, attributes),
    end(reason) {
      span.setAttribute(SSE_TRACE_ATTRIBUTES.closeReason, reason);
      if (reason === 'error') span.setStatus({ code: status.ERROR });
      span.end();
    },
  };
}

function fail(span: OpenTelemetry.Span, error: unknown): void {
  if (error instanceof Error) span.recordException(error);
  span.setStatus({ code: api!.SpanStatusCode.ERROR, message: (error as Error)?.message });
}
