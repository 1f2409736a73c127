import { comparePositions, OutboxPosition } from '../outbox-position';

/**
 * What one held event costs beyond its bytes (the entry, its position's two bigints, the Buffer
 * view object), counted against the budget so it bounds the memory actually used.
 */
export const ENTRY_OVERHEAD_BYTES = 200;

/** Bounds of the arena chunks' size: an eighth of the budget, within these. */
const MIN_CHUNK_BYTES = 4 * 1024;
const MAX_CHUNK_BYTES = 1024 * 1024;

/** One large allocation that frames are copied into, end to end. */
interface Chunk {
  buffer: Buffer;
  used: number;
}

interface Entry {
  topic: string;
  position: OutboxPosition;
  /** The event framed for SSE, as live streams received it: a view into {@link chunk}. */
  bytes: Buffer;
  chunk: Chunk;
}

/**
 * The events this instance's relay handed over most recently, framed, in position order, up to
 * `maxBytes`. It holds every event after {@link start} (of every topic, subscribed or not), so a
 * resuming client whose id is not older than that is replayed from memory: no query, no framing,
 * no pooled connection. That is what a reconnect storm needs (every client of a restarted
 * instance resuming at once, most of them a few seconds behind).
 *
 * Frames are copied into a few large chunks rather than held as small Buffers: a small Buffer
 * lives in an 8 KiB pool slab shared with whatever else was allocated around it, and pins the
 * whole slab, so 16 MiB of cached events held 56–84 MB. The budget counts the chunks themselves
 * (plus {@link ENTRY_OVERHEAD_BYTES} per event), which is what is really held; eviction frees
 * the oldest chunk whole.
 */
export class RecentEvents {
  private entries: Entry[] = [];
  /** Index of the oldest entry still held; evicted ones are compacted away in bulk. */
  private head = 0;
  private readonly chunks: Chunk[] = [];
  private chunkBytes = 0;
  private readonly chunkSize: number;
  /** Every event after this position, up to the newest pushed, is held. */
  private startPosition?: OutboxPosition;

  constructor(private readonly maxBytes: number) {
    this.chunkSize = Math.min(MAX_CHUNK_BYTES, Math.max(MIN_CHUNK_BYTES, Math.floor(maxBytes / 8)));
  }

  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  get size(): number {
    return this.entries.length - this.head;
  }

  /** Bytes counted against the budget: the chunks held, plus {@link ENTRY_OVERHEAD_BYTES} per event. */
  get heldBytes(): number {
    return this.chunkBytes + this.size * ENTRY_OVERHEAD_BYTES;
  }

  get start(): OutboxPosition | undefined {
    return this.startPosition;
  }

  /** Starts (or starts over) at `position`: nothing before it is known. */
  reset(position: OutboxPosition): void {
    this.entries = [];
    this.head = 0;
    this.chunks.length = 0;
    this.chunkBytes = 0;
    this.startPosition = position;
  }

  /**
   * Appends the next event in position order, framed as `frame`, evicting the oldest beyond
   * `maxBytes`. Returns the frame's bytes (held here when enabled), for live delivery to share.
   */
  push(topic: string, position: OutboxPosition, frame: string): Buffer {
    if (!this.enabled || !this.startPosition) return Buffer.from(frame);
    const length = Buffer.byteLength(frame);
    const chunk = this.chunkFor(length);
    chunk.buffer.write(frame, chunk.used);
    const bytes = chunk.buffer.subarray(chunk.used, chunk.used + length);
    chunk.used += length;
    this.entries.push({ topic, position, bytes, chunk });
    this.evict();
    return bytes;
  }

  /** The chunk to copy a frame of `length` bytes into: the newest, or a new one. */
  private chunkFor(length: number): Chunk {
    const newest = this.chunks[this.chunks.length - 1];
    if (newest && newest.buffer.length - newest.used >= length) return newest;
    // allocUnsafeSlow: never from the shared pool, so nothing else shares (or pins) it. A frame
    // larger than a quarter chunk gets an allocation of its own size.
    const size = length > this.chunkSize / 4 ? length : this.chunkSize;
    const chunk = { buffer: Buffer.allocUnsafeSlow(size), used: 0 };
    this.chunks.push(chunk);
    this.chunkBytes += size;
    return chunk;
  }

  /** Frees the oldest chunks, and the events in them, while over budget. */
  private evict(): void {
    while (this.heldBytes > this.maxBytes && this.chunks.length > 0) {
      const oldest = this.chunks.shift()!;
      this.chunkBytes -= oldest.buffer.length;
      while (this.head < this.entries.length && this.entries[this.head].chunk === oldest) {
        this.startPosition = this.entries[this.head++].position;
      }
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
    /** Only the events this says the client lacks (a snapshot position's). */
    lacks?: (position: OutboxPosition) => boolean,
  ): Buffer[] | undefined {
    const wanted = new Set(topics);
    const out: Buffer[] = [];
    for (let i = this.firstAfter(after); i < this.entries.length; i++) {
      const entry = this.entries[i];
      if (comparePositions(entry.position, upTo) > 0) break;
      if (!wanted.has(entry.topic)) continue;
      if (lacks && !lacks(entry.position)) continue;
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
