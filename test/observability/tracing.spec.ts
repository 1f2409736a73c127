import { INestApplication } from '@nestjs/common';
import { context, propagation, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  AlwaysOnSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { NextFunction, Request, Response } from 'express';
import { randomBytes } from 'node:crypto';
import { RecordingEventSource } from '../support/event-source';
import { OrdersController } from './orders.controller';
import { startApp, TestApp } from '../support/http';
import { dropOutbox, eventually, FANOUTS, outboxOptions, relayCaughtUp } from '../support/outbox';
import { databaseUrl, uniqueSchema, withClient } from '../support/postgres';
import { redisUrl } from '../support/redis';

/**
 * What an HTTP instrumentation does at the edge (Jest's module loader keeps
 * @opentelemetry/instrumentation-http from patching `http`): a SERVER span from the request's
 * `traceparent`, active while Nest handles it, ended with the response.
 */
function traceRequests(app: INestApplication): void {
  const tracer = trace.getTracer('test-http');
  app.use((request: Request, response: Response, next: NextFunction) => {
    const parent = propagation.extract(ROOT_CONTEXT, request.headers);
    const span = tracer.startSpan(
      `${request.method} ${request.path}`,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': request.method } },
      parent,
    );
    response.once('close', () => span.end());
    context.with(trace.setSpan(parent, span), next);
  });
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

describe.each(FANOUTS)(
  'OpenTelemetry traces, %s fan-out (SDK in-memory exporter, real PostgreSQL and Redis)',
  (fanout) => {
    const schema = uniqueSchema('otel');
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    let a: TestApp;
    let b: TestApp;
    const clients: RecordingEventSource[] = [];
    const track = (client: RecordingEventSource) => (clients.push(client), client);
    const spans = (traceId: string): ReadableSpan[] =>
      exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
    const named = (traceId: string, name: string) =>
      spans(traceId).filter((span) => span.name === name);

    beforeAll(async () => {
      trace.setGlobalTracerProvider(provider);
      context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
      const options = outboxOptions(
        schema,
        { redis: { url: redisUrl(), keyPrefix: `test:${schema}:` } },
        fanout,
      );
      a = await startApp([OrdersController], options, { beforeListen: traceRequests });
      b = await startApp(
        [OrdersController],
        { ...options, outbox: { ...options.outbox, migrate: false } },
        { beforeListen: traceRequests },
      );
    });
    afterEach(() => clients.splice(0).forEach((client) => client.close()));
    afterAll(async () => {
      await a?.close();
      await b?.close();
      await dropOutbox(schema);
      trace.disable();
      context.disable();
      propagation.disable();
      await provider.shutdown();
    });

    const post = (traceparent: string, key: string, item = 'book') =>
      fetch(`${a.url}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key, traceparent },
        body: JSON.stringify({ item }),
      });

    it('follows one event from the POST on instance A to its delivery on instance B, in one trace', async () => {
      const client = track(new RecordingEventSource(`${b.url}/orders`));
      await client.opened();
      const traceId = hex(16);
      const response = await post(`00-${traceId}-${hex(8)}-01`, `otel-${fanout}`);
      expect(response.status).toBe(201);
      const { ids } = (await response.json()) as { ids: string[] };
      await client.received(1);
      expect(client.events[0].lastEventId).toBe(ids[0]);

      const [server] = named(traceId, 'POST /orders');
      expect(server.attributes['nestjs_durable_sse.idempotency.outcome']).toBe('first');
      const [publish] = named(traceId, 'publish orders');
      expect(publish.kind).toBe(SpanKind.PRODUCER);
      expect(publish.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
      expect(publish.attributes).toMatchObject({
        'messaging.system': 'nestjs-durable-sse',
        'messaging.operation.type': 'send',
        'messaging.destination.name': 'orders',
        'messaging.message.id': ids[0],
        'db.system.name': 'postgresql',
        'db.collection.name': `${schema}.sse_outbox`,
      });

      // The row carries the publish span's context, as the W3C propagator writes it.
      const { rows } = await withClient(databaseUrl(), (pg) =>
        pg.query(`SELECT trace_context FROM "${schema}".sse_outbox ORDER BY id DESC LIMIT 1`),
      );
      expect(rows[0].trace_context).toBe(
        `traceparent=00-${traceId}-${publish.spanContext().spanId}-01`,
      );

      // Delivered where the subscriber is (B), not on A, which has none: one span, in the trace.
      await eventually(() => named(traceId, 'deliver orders').length > 0, 'the delivery span');
      const deliveries = named(traceId, 'deliver orders');
      expect(deliveries).toHaveLength(1);
      const [deliver] = deliveries;
      expect(deliver.kind).toBe(SpanKind.CONSUMER);
      expect(deliver.parentSpanContext?.spanId).toBe(publish.spanContext().spanId);
      expect(deliver.links.map((link) => link.context.spanId)).toEqual([
        publish.spanContext().spanId,
      ]);
      expect(deliver.attributes).toMatchObject({
        'messaging.operation.type': 'process',
        'messaging.destination.name': 'orders',
        'messaging.message.id': ids[0],
        'nestjs_durable_sse.subscribers': 1,
      });

      // The retry replays: its span says so, and nothing is published again.
      const retryTrace = hex(16);
      expect((await post(`00-${retryTrace}-${hex(8)}-01`, `otel-${fanout}`)).status).toBe(201);
      const [retry] = named(retryTrace, 'POST /orders');
      expect(retry.attributes['nestjs_durable_sse.idempotency.outcome']).toBe('replay');
      expect(named(retryTrace, 'publish orders')).toEqual([]);
    });

    it('records a stream from open to close, with its replay and its reset', async () => {
      const seed = async (item: string) => {
        const response = await post(`00-${hex(16)}-${hex(8)}-01`, `seed-${fanout}-${item}`, item);
        return ((await response.json()) as { ids: string[] }).ids[0];
      };
      const first = await seed('x');
      const second = await seed('y');
      // Both behind B's relay position, so the resume replays one event rather than getting it live.
      await relayCaughtUp(b);

      const streamTrace = hex(16);
      const resumed = track(
        new RecordingEventSource(`${b.url}/orders`, [], {
          'last-event-id': first,
          traceparent: `00-${streamTrace}-${hex(8)}-01`,
        }),
      );
      await resumed.received(1);
      expect(resumed.events[0].lastEventId).toBe(second);
      resumed.close();
      await eventually(
        () =>
          named(streamTrace, 'sse stream').length + named(streamTrace, 'GET /orders').length === 2,
        'the stream and request spans',
      );
      const [stream] = named(streamTrace, 'sse stream');
      expect(stream.parentSpanContext?.spanId).toBe(
        named(streamTrace, 'GET /orders')[0].spanContext().spanId,
      );
      expect(stream.attributes['nestjs_durable_sse.stream.close_reason']).toBe('client');
      expect(stream.events.map((e) => [e.name, e.attributes])).toEqual([
        [
          'replay',
          {
            'nestjs_durable_sse.stream.replayed_events': 1,
            'nestjs_durable_sse.stream.replayed_from': expect.stringMatching(/memory|stream|table/),
          },
        ],
      ]);

      const resetTrace = hex(16);
      const broken = track(
        new RecordingEventSource(`${b.url}/orders`, ['reset'], {
          'last-event-id': 'garbage',
          traceparent: `00-${resetTrace}-${hex(8)}-01`,
        }),
      );
      await broken.received(1);
      broken.close();
      await eventually(() => named(resetTrace, 'sse stream').length > 0, 'the reset stream span');
      expect(named(resetTrace, 'sse stream')[0].events.map((e) => [e.name, e.attributes])).toEqual([
        ['reset', { 'nestjs_durable_sse.stream.reset_reason': 'malformed' }],
      ]);
    });

    it('keeps an unsampled trace unsampled: its context travels, no span is recorded', async () => {
      const client = track(new RecordingEventSource(`${b.url}/orders`));
      await client.opened();
      const traceId = hex(16);
      const response = await post(`00-${traceId}-${hex(8)}-00`, `unsampled-${fanout}`);
      const { ids } = (await response.json()) as { ids: string[] };
      await client.until(
        () => client.events.some((event) => event.lastEventId === ids[0]),
        'the unsampled event',
      );
      const { rows } = await withClient(databaseUrl(), (pg) =>
        pg.query(`SELECT trace_context FROM "${schema}".sse_outbox WHERE id = $1`, [
          ids[0].split('-')[1],
        ]),
      );
      expect(rows[0].trace_context).toMatch(
        new RegExp(`^traceparent=00-${traceId}-[0-9a-f]{16}-00$`),
      );
      expect(spans(traceId)).toEqual([]);
    });
  },
);
