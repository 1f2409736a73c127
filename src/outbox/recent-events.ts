import { comparePositions, OutboxPosition } from './outbox-position';

/**
 * What one held event costs beyond its bytes (the entry, its position's two bigints, the Buffer
 * object), counted against the budget so it bounds the memory actually used.
 */
export const ENTRY_OVERHEAD_BYTES = 200;

interface Entry {
  topic: string;
  position: OutboxPosition;
  /** The event framed for SSE, as live streams received it. */
  bytes: Buffer;
}

/**
 * The events this instance's relay handed over most recently, framed, in position order, up to
 * `maxBytes`. It holds every event after {@link start} (of every topic, subscribed or not), so a
 * resuming client whose id is not older than that is replayed from memory: no query, no framing,
 * no pooled connection. That is what a reconnect storm needs (every client of a restarted
 * instance resuming at once, most of them a few seconds behind).
 */
export class RecentEvents {
  private entries: Entry[] = [];
  /** Index of the oldest entry still held; evicted ones are compacted away in bulk. */
  private head = 0;
  private bytes = 0;
  /** Every event after this position, up to the newest pushed, is held. */
  private startPosition?: OutboxPosition;

  constructor(private readonly maxBytes: number) {}

  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  get size(): number {
    return this.entries.length - this.head;
  }

  /** Bytes counted against the budget (event bytes plus {@link ENTRY_OVERHEAD_BYTES} each). */
  get heldBytes(): number {
    return this.bytes;
  }

  get start(): OutboxPosition | undefined {
    return this.startPosition;
  }

  /** Starts (or starts over) at `position`: nothing before it is known. */
  reset(position: OutboxPosition): void {
    this.entries = [];
    this.head = 0;
    this.bytes = 0;
    this.startPosition = position;
  }

  /** Appends the next event in position order, evicting the oldest beyond `maxBytes`. */
  push(topic: string, position: OutboxPosition, bytes: Buffer): void {
    if (!this.enabled || !this.startPosition) return;
    this.entries.push({ topic, position, bytes });
    this.bytes += bytes.length + ENTRY_OVERHEAD_BYTES;
    while (this.bytes > this.maxBytes && this.head < this.entries.length) {
      const evicted = this.entries[this.head++];
      this.bytes -= evicted.bytes.length + ENTRY_OVERHEAD_BYTES;
      this.startPosition = evicted.position;
    }
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  /** Whether every event after `after` (up to the newest pushed) is held. */
  covers(after: OutboxPosition): boolean {
    return this.enabled && !!this.startPosition && comparePositions(after, this.startPosition) >= 0;
  }

  /**
   * The framed events of `topics` in (`after`, `upTo`], oldest first; `undefined` when there are
   * more than `limit`. Only meaningful when {@link covers}(`after`).
   */
  collect(
    topics: readonly string[],
    after: OutboxPosition,
    upTo: OutboxPosition,
    limit: number,
  ): Buffer[] | undefined {
    const wanted = new Set(topics);
    const out: Buffer[] = [];
    for (let i = this.firstAfter(after); i < this.entries.length; i++) {
      const entry = this.entries[i];
      if (comparePositions(entry.position, upTo) > 0) break;
      if (!wanted.has(entry.topic)) continue;
      if (out.length === limit) return undefined;
      out.push(entry.bytes);
    }
    return out;
  }

  /** Index of the first held entry after `after` (binary search: entries are in position order). */
  private firstAfter(after: OutboxPosition): number {
    let low = this.head;
    let high = this.entries.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (comparePositions(this.entries[middle].position, after) <= 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}
