import type { StreamTrace } from '../observability/tracing';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { directSocket, httpChunk, writeCorked } from './http-chunk';

/**
 * Framed events on their way to subscribers: encoded once, written to each. `P` is the feed's
 * position type: opaque here, compared only by the feed (see {@link SseSeenFilter}).
 */
export interface SseBatch<P = unknown> {
  /** Every event of the batch, framed and concatenated. */
  bytes: Buffer;
  /** Batches of a feed with positions: each event with its position, for streams resuming mid-batch. */
  events?: ReadonlyArray<{ position: P; bytes: Buffer }>;
  /** Batches of a feed with positions: the position of the last event. */
  last?: P;
  /** `bytes` as one HTTP/1.1 chunk, built once for all subscribers on first use. */
  chunk?: Buffer;
}

/**
 * Given by a feed when a stream goes live already holding some live events (it resumed from an
 * instance whose feed was further on). For each live batch until it says otherwise: `'seen'`
 * (the client has all of it: skip), the bytes the client lacks (write them; the filter is done),
 * `{ partial }` (write these bytes of it, keep filtering), or `undefined` (not a batch it can
 * place: write it whole, keep filtering).
 */
export type SseSeenFilter = (batch: SseBatch) => 'seen' | Buffer | { partial: Buffer } | undefined;

/** Anything the hub can deliver framed events to. */
export interface SseSubscriber {
  deliver(batch: SseBatch): void;
}

export type SseCloseReason = 'client' | 'complete' | 'error' | 'slow-consumer' | 'shutdown';

/**
 * One open event stream on one HTTP response. Owns everything the stream holds (hub
 * subscriptions, the handler's subscription, its slot in the registry) and frees all of it on
 * the first close, whatever caused it.
 */
export class SseConnection implements SseSubscriber {
  /** Heartbeat ticks since the last write; see SseConnectionRegistry. */
  idleTicks = 0;
  private closed = false;
  private readonly cleanups: Array<() => void> = [];
  /** Live batches held back while a replay is being written. */
  private pending?: SseBatch[];
  /** Which live events the client already has; see {@link endReplay}. */
  private seen?: SseSeenFilter;
  /** The socket to write chunks to directly (null: use `response.write()`); found on first write. */
  private directSocket?: Socket | null;
  /** Armed while the unsent backlog is above maxBufferedBytes; see {@link afterWrite}. */
  private slowTimer?: NodeJS.Timeout;
  /** The stream's span, when a tracing SDK records it (observability/tracing.ts). */
  trace?: StreamTrace;

  constructor(
    readonly response: ServerResponse,
    readonly clientKey: string,
    private readonly maxBufferedBytes: number,
    private readonly onClose: (connection: SseConnection, reason: SseCloseReason) => void,
    private readonly slowConsumerMs: number,
  ) {
    response.once('close', () => this.close('client'));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Registers teardown work to run exactly once when the stream closes. */
  onTeardown(cleanup: () => void): void {
    if (this.closed) cleanup();
    else this.cleanups.push(cleanup);
  }

  /** Holds live batches back until {@link endReplay}; replayed events are written directly. */
  beginReplay(): void {
    this.pending = [];
  }

  /**
   * Releases the held batches, then goes live. `seen`: which live events the client already
   * has (it resumed from an instance whose feed was ahead of this one's).
   */
  endReplay(seen?: SseSeenFilter): void {
    const pending = this.pending ?? [];
    this.pending = undefined;
    this.seen = seen;
    for (const batch of pending) this.deliver(batch);
  }

  deliver(batch: SseBatch): void {
    if (this.closed) return;
    if (this.pending) {
      // Held while a replay is written; the buffers are the batches every subscriber shares, and
      // the replay that holds them is bounded in time (postgres.queryTimeoutMs).
      this.pending.push(batch);
      return;
    }
    if (this.seen) {
      const fresh = this.seen(batch);
      if (fresh === 'seen') return;
      if (Buffer.isBuffer(fresh)) {
        this.seen = undefined;
        this.write(fresh);
        return;
      }
      if (fresh) return this.write(fresh.partial);
    }
    this.writeBatch(batch);
  }

  /** Writes a batch as the one HTTP chunk every subscriber of it shares (built on first use). */
  private writeBatch(batch: SseBatch): void {
    if (this.closed) return;
    const socket = this.socket();
    if (!socket) return this.write(batch.bytes);
    this.writeChunk(socket, (batch.chunk ??= httpChunk(batch.bytes)));
  }

  /** Writes SSE bytes (frames, comments) to the stream. */
  write(data: Buffer | string): void {
    if (this.closed) return;
    const socket = this.socket();
    if (socket)
      return this.writeChunk(
        socket,
        httpChunk(typeof data === 'string' ? Buffer.from(data) : data),
      );
    this.response.write(data);
    this.afterWrite();
  }

  private socket(): Socket | undefined {
    if (this.directSocket === undefined) this.directSocket = directSocket(this.response) ?? null;
    return this.directSocket ?? undefined;
  }

  private writeChunk(socket: Socket, chunk: Buffer): void {
    if (this.closed) return;
    writeCorked(socket, chunk);
    // Everything goes straight to the socket, so its backlog is the whole backlog; reading it
    // there skips the response's getter, slow on Express responses (their swapped prototype).
    this.afterWrite(socket);
  }

  /**
   * writableLength counts what neither the response nor the socket could hand to the kernel yet.
   * Above maxBufferedBytes the client is suspected, not judged: one big transaction or replay
   * lands here even for a client that reads as fast as it can. A client that reads drains below
   * the mark within slowConsumerMs; one that is still above it then is not reading, and is cut
   * (it resumes by id; nothing is lost). Meanwhile the backlog holds references to the buffers
   * all subscribers share, not copies, so suspects cost little memory of their own.
   */
  private afterWrite(socket?: Socket): void {
    this.idleTicks = 0;
    if (this.slowTimer || this.backlog(socket) <= this.maxBufferedBytes) return;
    this.slowTimer = setTimeout(() => {
      this.slowTimer = undefined;
      if (this.backlog(this.socket()) > this.maxBufferedBytes) this.close('slow-consumer');
    }, this.slowConsumerMs);
    this.slowTimer.unref();
  }

  private backlog(socket: Socket | undefined): number {
    return (socket ?? this.response).writableLength;
  }

  close(reason: SseCloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = undefined;
    clearTimeout(this.slowTimer);
    for (const cleanup of this.cleanups.splice(0)) {
      try {
        cleanup();
      } catch {
        // teardown must reach every resource even if one throws
      }
    }
    if (reason === 'slow-consumer') {
      // end() would queue behind the unsent backlog; destroy frees it now.
      this.response.destroy();
    } else if (!this.response.writableEnded) {
      this.response.end();
    }
    this.onClose(this, reason);
  }
}
