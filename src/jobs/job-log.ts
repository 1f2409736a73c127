import type { Cluster, Redis } from 'ioredis';
import { raceTimeout } from '../common/timeout';

/**
 * A job's log in Redis: a stream of framed SSE events whose entry ids are `0-<n>`, n the event's
 * `id:` (1, 2, 3…), written by the one instance running the job; a hash with its owner and state;
 * and a key the runner keeps alive while it runs. One hash tag per job, so a Redis Cluster keeps
 * the three on one slot.
 */
export function jobKeys(id: string) {
  return { log: `job:{${id}}:log`, meta: `job:{${id}}:meta`, alive: `job:{${id}}:alive` };
}

export type JobState = 'running' | 'done' | 'error';
export type JobEnd = 'done' | 'error';

export interface JobMeta {
  owner: string;
  state: JobState;
  cancel?: string;
}

export interface LogEntry {
  n: number;
  frame: string;
  end?: JobEnd;
  /**
   * An end that is not a cancel: the end to log instead when a cancel was accepted before it
   * (CANCEL_SCRIPT answered 202 for it), so that a 202 always means the job ends cancelled.
   */
  cancelledFrame?: string;
}

/** The runner's lease on being alive: refreshed every ALIVE_REFRESH_MS, gone ALIVE_TTL_MS after it stops. */
export const ALIVE_REFRESH_MS = 1_000;
export const ALIVE_TTL_MS = 5_000;

/**
 * Ends a job whose runner is gone (its process died: the alive key expired) with `event: error`,
 * once: only while the job is still `running` and nobody is alive for it. The next id is the
 * log's last + 1, so a runner that was only slow fails its next append (ids must grow) instead
 * of writing after the end.
 */
const ABANDON_SCRIPT = `
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local n = 0
if last[1] then n = tonumber(string.match(last[1][1], '%-(%d+)$')) end
n = n + 1
local frame = 'id: ' .. n .. '\\n' .. ARGV[1]
redis.call('XADD', KEYS[2], '0-' .. n, 'f', frame, 'end', 'error')
redis.call('HSET', KEYS[1], 'state', 'error')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1`;

/**
 * Accepts a cancel of a job running elsewhere, or not: only while the job is `running` and its
 * end is not in the log yet. An accepted cancel is binding: the runner ends the job cancelled at
 * its next heartbeat, and an end it was about to log anyway is logged as cancelled instead
 * (END_SCRIPT) — so the `202` answered for it never turns out to be a job that ended `done`.
 */
const CANCEL_SCRIPT = `
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'end' then return 0 end
  end
end
redis.call('HSET', KEYS[1], 'cancel', '1')
return 1`;

/**
 * Logs a job's end (ARGV: entry id, frame, end, the cancelled frame or ''): the cancelled frame
 * instead when a cancel was accepted before it. Returns 1 when it logged the cancel.
 */
const END_SCRIPT = `
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'cancel') == '1' then
  redis.call('XADD', KEYS[2], ARGV[1], 'f', ARGV[4], 'end', 'error')
  return 1
end
redis.call('XADD', KEYS[2], ARGV[1], 'f', ARGV[2], 'end', ARGV[3])
return 0`;

/**
 * The runner's heartbeat: -1 when the job is no longer running in the log (a follower ended it
 * as abandoned while this runner stalled, or the record is gone) — the alive key is then not
 * set again, so no one takes a stalled runner for a live one; else 1 when a cancel was accepted,
 * 0 otherwise, with the alive key refreshed for ARGV[1] ms.
 */
const HEARTBEAT_SCRIPT = `
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return -1 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 1 end
return 0`;

type Client = Redis | Cluster;
type Scripted = Client & {
  sseJobAbandon(...args: unknown[]): Promise<number>;
  sseJobCancel(...args: unknown[]): Promise<number>;
  sseJobEnd(...args: unknown[]): Promise<number>;
  sseJobHeartbeat(...args: unknown[]): Promise<number>;
};

/** Every call bounded by `timeoutMs`: a silent Redis fails the call, it never hangs it. */
export class JobLog {
  constructor(
    private readonly client: Client,
    private readonly timeoutMs: number,
  ) {
    if (!(client as { sseJobAbandon?: unknown }).sseJobAbandon) {
      client.defineCommand('sseJobAbandon', { numberOfKeys: 3, lua: ABANDON_SCRIPT });
      client.defineCommand('sseJobCancel', { numberOfKeys: 2, lua: CANCEL_SCRIPT });
      client.defineCommand('sseJobEnd', { numberOfKeys: 2, lua: END_SCRIPT });
      client.defineCommand('sseJobHeartbeat', { numberOfKeys: 2, lua: HEARTBEAT_SCRIPT });
    }
  }

  private bounded<T>(call: Promise<T>): Promise<T> {
    return raceTimeout(call, this.timeoutMs, () => {
      throw new Error(`Redis did not answer within ${this.timeoutMs} ms`);
    });
  }

  /** Registers a new job, running, owned by `owner`; everything expires after `ttlMs` if never ended. */
  async create(id: string, owner: string, ttlMs: number): Promise<void> {
    const keys = jobKeys(id);
    await this.bounded(
      Promise.all([
        this.client.hset(keys.meta, 'owner', owner, 'state', 'running'),
        this.client.pexpire(keys.meta, ttlMs),
        this.client.set(keys.alive, '1', 'PX', ALIVE_TTL_MS),
      ]),
    );
  }

  /**
   * Appends entries in order (ids must grow: an append after someone else's end fails). Resolves
   * true when the end among them was logged as a cancel accepted before it (END_SCRIPT).
   */
  async append(id: string, entries: LogEntry[], ttlMs: number): Promise<boolean> {
    const keys = jobKeys(id);
    const client = this.client as Scripted;
    const results = await this.bounded(
      Promise.all([
        ...entries.map((entry) =>
          entry.end
            ? client.sseJobEnd(
                keys.meta,
                keys.log,
                `0-${entry.n}`,
                entry.frame,
                entry.end,
                entry.cancelledFrame ?? '',
              )
            : this.client.xadd(keys.log, `0-${entry.n}`, 'f', entry.frame),
        ),
        // The stream exists from its first entry on: its expiry is set then, once.
        ...(entries[0]?.n === 1 ? [this.client.pexpire(keys.log, ttlMs)] : []),
      ]),
    );
    return entries.some((entry, i) => entry.end !== undefined && results[i] === 1);
  }

  /** Marks the job ended and starts its retention. */
  async end(id: string, state: JobEnd, retentionMs: number): Promise<void> {
    const keys = jobKeys(id);
    await this.bounded(
      Promise.all([
        this.client.hset(keys.meta, 'state', state),
        this.client.pexpire(keys.meta, retentionMs),
        this.client.pexpire(keys.log, retentionMs),
        this.client.del(keys.alive),
      ]),
    );
  }

  /**
   * The runner's beat (HEARTBEAT_SCRIPT): refreshes its alive key while the job is still running
   * in the log, and says whether a cancel was asked for, or the job was ended meanwhile.
   */
  async heartbeat(id: string): Promise<'running' | 'cancel' | 'abandoned'> {
    const keys = jobKeys(id);
    const beat = await this.bounded(
      (this.client as Scripted).sseJobHeartbeat(keys.meta, keys.alive, ALIVE_TTL_MS),
    );
    return beat === -1 ? 'abandoned' : beat === 1 ? 'cancel' : 'running';
  }

  async meta(id: string): Promise<JobMeta | undefined> {
    const fields = await this.bounded(this.client.hgetall(jobKeys(id).meta));
    // An anonymous job's owner is '' (the hash still has the field).
    if (fields.owner === undefined || !fields.state) return undefined;
    return fields as unknown as JobMeta;
  }

  /** See CANCEL_SCRIPT: true when the cancel was accepted (the job will end cancelled). */
  async requestCancel(id: string): Promise<boolean> {
    const keys = jobKeys(id);
    return (await this.bounded((this.client as Scripted).sseJobCancel(keys.meta, keys.log))) === 1;
  }

  /** Entries after event `after`, at most `count`. */
  async read(id: string, after: number, count: number): Promise<LogEntry[]> {
    const entries = await this.bounded(
      this.client.xrange(jobKeys(id).log, `(0-${after}`, '+', 'COUNT', count),
    );
    return entries.map(([entryId, fields]) => {
      const entry: LogEntry = { n: Number(entryId.slice(2)), frame: '' };
      for (let i = 0; i < fields.length; i += 2) {
        if (fields[i] === 'f') entry.frame = fields[i + 1];
        if (fields[i] === 'end') entry.end = fields[i + 1] as JobEnd;
      }
      return entry;
    });
  }

  /** The id of the last entry (0 when empty). */
  async last(id: string): Promise<number> {
    const [entry] = await this.bounded(
      this.client.xrevrange(jobKeys(id).log, '+', '-', 'COUNT', 1),
    );
    return entry ? Number(entry[0].slice(2)) : 0;
  }

  /** See ABANDON_SCRIPT: true when this call ended the job. */
  /** `frameTail`: the end's frame without its `id:` line (the script numbers it). */
  async abandonIfDead(id: string, frameTail: string, retentionMs: number): Promise<boolean> {
    const keys = jobKeys(id);
    const ended = await this.bounded(
      (this.client as Scripted).sseJobAbandon(
        keys.meta,
        keys.log,
        keys.alive,
        frameTail,
        retentionMs,
      ),
    );
    return ended === 1;
  }
}
