/**
 * Outbox benchmark publisher (child process): commits events through OutboxService at a given
 * rate, or as fast as it can, with `perTx` events per transaction. Each payload carries the time
 * its transaction started, so receivers measure transaction start → receipt.
 */
import { OutboxService, resolveSseModuleOptions } from '../../src';
import { OutboxStore } from '../../src/outbox/store/outbox-store';
import { PostgresConnection } from '../../src/connections/postgres-connection';
import { now } from '../shared/sse-client';

const [databaseUrl, schema, notifyMode] = process.argv.slice(2);
const options = resolveSseModuleOptions({
  postgres: { connectionString: databaseUrl, schema, pool: { max: 8 } },
  outbox: { migrate: false },
});
const postgres = new PostgresConnection(options);
const outbox = new OutboxService(postgres, new OutboxStore(options, postgres));
const pool = postgres.requirePool();

// 'after-commit': the trigger is dropped and the publisher notifies after each commit instead,
// coalesced to at most one NOTIFY in flight (the design asked for this comparison).
let notifying = false;
let notifyAgain = false;
async function notifyAfterCommit(): Promise<void> {
  if (notifying) {
    notifyAgain = true;
    return;
  }
  notifying = true;
  do {
    notifyAgain = false;
    await pool.query(`SELECT pg_notify('sse_outbox', '')`);
  } while (notifyAgain);
  notifying = false;
}

async function commit(perTx: number): Promise<void> {
  const t = now();
  const events = Array.from({ length: perTx }, () => ({ topic: 'bench', data: { t } }));
  await outbox.transaction((tx) => outbox.publish(tx, events));
  if (notifyMode === 'after-commit') void notifyAfterCommit();
}

interface Run {
  cmd: 'run';
  perTx: number;
  /** Events per second to aim for; 0 = as fast as possible with `concurrency` publishers. */
  rate: number;
  seconds: number;
  concurrency: number;
}

async function run({
  perTx,
  rate,
  seconds,
  concurrency,
}: Run): Promise<{ committed: number; elapsedMs: number }> {
  const started = now();
  const deadline = started + seconds * 1000;
  let committed = 0;
  if (rate > 0) {
    // Fixed schedule: transaction k starts at started + k * perTx / rate seconds.
    const intervalMs = (1000 * perTx) / rate;
    const inFlight = new Set<Promise<void>>();
    for (let k = 0; ; k++) {
      const at = started + k * intervalMs;
      if (at >= deadline) break;
      const wait = at - now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      const p: Promise<void> = commit(perTx).then(() => {
        committed += perTx;
        inFlight.delete(p);
      });
      inFlight.add(p);
      if (inFlight.size >= 64) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  } else {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (now() < deadline) {
          await commit(perTx);
          committed += perTx;
        }
      }),
    );
  }
  return { committed, elapsedMs: now() - started };
}

process.on('message', async (message: Run | { cmd: 'exit' }) => {
  if (message.cmd === 'run') process.send!({ cmd: 'done', ...(await run(message)) });
  else {
    await postgres.onApplicationShutdown();
    process.exit(0);
  }
});
process.send!({ cmd: 'ready' });
