import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { raceTimeout } from '../../common/timeout';

/**
 * Which job is a chat's current turn, per principal: `chat:{<hash of owner and chat id>}` →
 * job id, in Redis so every instance finds it. A new turn replaces the pointer and gets the one
 * it replaced (SET … GET, one command), so of turns started at once exactly the last one to
 * write stays current and every other is superseded.
 */
export class ChatTurns {
  constructor(
    private readonly client: Redis | Cluster,
    private readonly timeoutMs: number,
  ) {}

  private key(owner: string, chatId: string): string {
    const hash = createHash('sha256').update(owner).update('\0').update(chatId).digest('base64url');
    return `chat:{${hash}}`;
  }

  private bounded<T>(call: Promise<T>): Promise<T> {
    return raceTimeout(call, this.timeoutMs, () => {
      throw new Error(`Redis did not answer within ${this.timeoutMs} ms`);
    });
  }

  /** Makes `jobId` the chat's turn; resolves with the turn it replaced, if any. */
  replace(owner: string, chatId: string, jobId: string, ttlMs: number): Promise<string | null> {
    const set = this.client.set as unknown as (...args: unknown[]) => Promise<string | null>;
    return this.bounded(set.call(this.client, this.key(owner, chatId), jobId, 'PX', ttlMs, 'GET'));
  }

  current(owner: string, chatId: string): Promise<string | null> {
    return this.bounded(this.client.get(this.key(owner, chatId)));
  }
}
