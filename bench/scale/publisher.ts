/**
 * Scale benchmark publisher (child process, so the parent's SSE parsing does not slow the
 * schedule): single-statement transactions (one implicit transaction each) on a fixed schedule,
 * each inserting one event that carries its start time and sending the floor's NOTIFY with it.
 */
import { Pool } from 'pg';
import { now } from '../shared/sse-client';

const [databaseUrl] = process.argv.slice(2);
const pool = new Pool({ connectionString: databaseUrl, max: 16 });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function run(schema: string, count: number, rate: number) {
  const sql = `WITH e AS (INSERT INTO "${schema}".sse_outbox (topic, payload) VALUES ('bench', $1::jsonb))
    SELECT pg_notify('bench_floor', $2)`;
  const started = now();
  const interval = 1000 / rate;
  const inFlight = new Set<Promise<void>>();
  for (let k = 0; k < count; k++) {
    const wait = started + k * interval - now();
    if (wait > 1) await sleep(wait);
    const t = String(now());
    const p: Promise<void> = pool
      .query(sql, [`{"t":${t}}`, t])
      .then(() => undefined)
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= 64) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return { elapsedMs: now() - started };
}

process.on(
  'message',
  async (message: { cmd: string; schema: string; count: number; rate: number }) => {
    if (message.cmd === 'run')
      process.send!({ cmd: 'done', ...(await run(message.schema, message.count, message.rate)) });
    if (message.cmd === 'exit') {
      await pool.end();
      process.exit(0);
    }
  },
);
process.send!({ cmd: 'ready' });
