/**
 * Followers of one remote job (issue 28, defect 9): Redis commands per second while N clients on
 * instance B follow one job that runs on instance A (one token every --every-ms), for each N of
 * --followers (0 is the job alone: its appends and heartbeats). Followers of one job on one
 * instance share one reader of its log, so the figure should not grow with N.
 *
 *   npm run bench -- job-followers [--followers 0,1,100,1000] [--seconds 2] [--every-ms 50]
 *
 * Uses REDIS_URL (default redis://127.0.0.1:6379; other traffic on it counts too), under a key
 * prefix of its own. Both instances are bench/jobs/server.ts in child processes.
 */
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import Redis from 'ioredis';
import { listOption, numericOption, spawnChild, stopChild, writeReport } from '../shared/child';

const FOLLOWERS = listOption('followers', '0,1,100,1000').map(Number);
const SECONDS = numericOption('seconds', 2);
const EVERY_MS = numericOption('every-ms', 50);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

async function commandsProcessed(redis: Redis): Promise<number> {
  const info = await redis.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)![1]);
}

/** A GET stream that counts its events; resolves `first` at the first one. */
function follow(port: number, location: string) {
  const state = { events: 0 };
  let firstEvent!: () => void;
  const first = new Promise<void>((resolve) => (firstEvent = resolve));
  const request = http.get({ host: '127.0.0.1', port, path: location, agent: false }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      const count = chunk.split('\n\n').length - 1;
      if (count > 0 && state.events === 0) firstEvent();
      state.events += count;
    });
  });
  request.on('error', () => undefined);
  return { state, first, close: () => request.destroy() };
}

async function main() {
  const keyPrefix = `bench-followers:${randomBytes(4).toString('hex')}:`;
  const server = path.join(__dirname, '../jobs/server.js');
  const a = await spawnChild(server, ['job', REDIS_URL, keyPrefix]);
  const b = await spawnChild(server, ['job', REDIS_URL, keyPrefix]);
  const redis = new Redis(REDIS_URL);
  const rows: Array<Record<string, number>> = [];
  let job: http.ClientRequest | undefined;
  try {
    // One long job on A; its Content-Location is the resume path on any instance.
    const location = await new Promise<string>((resolve, reject) => {
      job = http.request(
        { host: '127.0.0.1', port: a.ready.port, path: '/generate', method: 'POST', agent: false },
        (res) => {
          res.resume();
          resolve(String(res.headers['content-location']));
        },
      );
      job.on('error', reject);
      job.setHeader('content-type', 'application/json');
      job.end(JSON.stringify({ events: 1_000_000, everyMs: EVERY_MS }));
    });
    for (const count of FOLLOWERS) {
      const followers = Array.from({ length: count }, () => follow(b.ready.port, location));
      await Promise.all(followers.map((f) => f.first));
      const before = await commandsProcessed(redis);
      const eventsBefore = followers.reduce((sum, f) => sum + f.state.events, 0);
      await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
      const commands = (await commandsProcessed(redis)) - before - 1;
      const delivered = followers.reduce((sum, f) => sum + f.state.events, 0) - eventsBefore;
      const row = {
        followers: count,
        redisCommandsPerSecond: Math.round(commands / SECONDS),
        eventsDeliveredPerSecond: Math.round(delivered / SECONDS),
      };
      rows.push(row);
      console.log(JSON.stringify(row));
      followers.forEach((f) => f.close());
    }
    console.table(rows);
    writeReport('job-followers', {
      benchmark: 'job-followers',
      date: new Date().toISOString(),
      everyMs: EVERY_MS,
      seconds: SECONDS,
      rows,
    });
  } finally {
    job?.destroy();
    await Promise.all([stopChild(a.child), stopChild(b.child)]);
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
