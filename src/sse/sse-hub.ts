import { Inject, Injectable } from '@nestjs/common';
import { SseEvent, SseEventError } from './sse-event';
import { assertSseEvent, encodeEvent } from './sse-encoder';
import { SSE_EVENT_SERIALIZER, SseEventSerializer } from './sse-event-serializer';
import type { SseBatch, SseSubscriber } from './sse-connection';

const MAX_TOPIC_LENGTH = 1024;
/**
 * Streams written per turn of the event loop. One event to 15,000 streams is 15,000 socket
 * writes, ~130 ms on one core: written at once, everything else the instance does (health
 * checks, resumes, requests) waits that long, twice a second at 2 events/s. Past this many,
 * delivery yields between slices.
 */
export const SSE_DELIVERY_SLICE = 2_000;

export function assertTopic(topic: unknown): asserts topic is string {
  if (typeof topic !== 'string' || topic.length === 0 || topic.length > MAX_TOPIC_LENGTH) {
    throw new SseEventError(`SSE topic must be a string of 1..${MAX_TOPIC_LENGTH} characters`);
  }
}

/**
 * In-process fan-out of events to the streams subscribed to a topic. Each published event is
 * serialized and framed once, and the same buffer is written to every subscriber.
 */
@Injectable()
export class SseHub {
  private readonly topics = new Map<string, Set<SseSubscriber>>();
  /** Event deliveries to subscribers so far (an event reaching 3 streams counts 3). */
  delivered = 0;
  /**
   * Batches still being written, in publish order, each to the subscribers it had when
   * published. While any is, every later batch waits its turn: a stream of several topics gets
   * its events in the order they were published, which is what its Last-Event-ID relies on.
   */
  private readonly pending: Array<{
    subscribers: SseSubscriber[];
    batch: SseBatch;
    next: number;
  }> = [];
  private draining = false;

  constructor(@Inject(SSE_EVENT_SERIALIZER) private readonly serializer: SseEventSerializer) {}

  /**
   * Publishes to every current subscriber of `topic`. Validates all events before writing any,
   * so a bad event in a batch delivers nothing. Returns the number of subscribers reached.
   */
  publish(topic: string, events: SseEvent | readonly SseEvent[]): number {
    assertTopic(topic);
    const list: readonly SseEvent[] = Array.isArray(events) ? events : [events as SseEvent];
    for (const event of list) assertSseEvent(event);
    const bytes = Buffer.from(list.map((event) => this.encode(event)).join(''), 'utf8');
    return this.deliver(topic, { bytes }, list.length);
  }

  /** Writes an already framed batch to every subscriber of `topic` (used by the outbox relay). */
  deliver(topic: string, batch: SseBatch, events = batch.events?.length ?? 1): number {
    const subscribers = this.topics.get(topic);
    if (!subscribers) return 0;
    this.delivered += events * subscribers.size;
    if (subscribers.size <= SSE_DELIVERY_SLICE && this.pending.length === 0) {
      for (const subscriber of subscribers) subscriber.deliver(batch);
      return subscribers.size;
    }
    // The subscribers of now: one that subscribes while this is written resumed past it.
    this.pending.push({ subscribers: [...subscribers], batch, next: 0 });
    if (!this.draining) this.drain();
    return subscribers.size;
  }

  /** Writes pending batches, SSE_DELIVERY_SLICE streams per turn of the event loop. */
  private drain(): void {
    this.draining = true;
    let budget = SSE_DELIVERY_SLICE;
    while (this.pending.length > 0 && budget > 0) {
      const delivery = this.pending[0];
      const end = Math.min(delivery.subscribers.length, delivery.next + budget);
      for (let i = delivery.next; i < end; i++) delivery.subscribers[i].deliver(delivery.batch);
      budget -= end - delivery.next;
      delivery.next = end;
      if (end === delivery.subscribers.length) this.pending.shift();
    }
    if (this.pending.length > 0) setImmediate(() => this.drain());
    else this.draining = false;
  }

  /** Frames one event with the module's serializer (validating it). */
  encode(event: SseEvent): string {
    return encodeEvent({
      id: event.id,
      type: event.type,
      retry: event.retry,
      data: this.serializer.serialize(event.data),
    });
  }

  /** Subscribes to one or more topics; the returned function unsubscribes from all of them. */
  subscribe(topics: string | readonly string[], subscriber: SseSubscriber): () => void {
    const list = typeof topics === 'string' ? [topics] : [...new Set(topics)];
    for (const topic of list) assertTopic(topic);
    for (const topic of list) {
      let set = this.topics.get(topic);
      if (!set) this.topics.set(topic, (set = new Set()));
      set.add(subscriber);
    }
    return () => {
      for (const topic of list) {
        const set = this.topics.get(topic);
        if (!set) continue;
        set.delete(subscriber);
        if (set.size === 0) this.topics.delete(topic);
      }
    };
  }

  /** Subscribers of one topic, or of all topics (counting a stream once per topic). */
  subscriberCount(topic?: string): number {
    if (topic !== undefined) return this.topics.get(topic)?.size ?? 0;
    let total = 0;
    for (const set of this.topics.values()) total += set.size;
    return total;
  }

  /** Topics that currently have at least one subscriber. */
  activeTopics(): string[] {
    return [...this.topics.keys()];
  }
}
