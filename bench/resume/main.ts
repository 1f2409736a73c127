/**
 * Resume: N clients follow one topic while E events are published; each client is cut off at
 * random moments and reconnects with Last-Event-ID. Every client must end with every event exactly
 * once: lost and duplicated must both be 0. Also reports how long catching up took.
 *
 *   npm run bench -- resume [--clients 1000] [--events 100000] [--cuts 2] [--replay-cache-bytes N]
 *                           [--event-bytes N]
 *
 * `--event-bytes N` pads each event to about N bytes of JSON (e.g. 2500): transactions of 100 such
 * events are far larger than sse.maxBufferedBytes, so it checks that big batches and big replays
 * reach every client that reads (docs/guarantees.md). Its report is written as resume-<N>b.json.
 *
 * Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) in a schema of its own.
 */
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import { Client } from 'pg';
import { OutboxService, resolveSseModuleOptions } from '../../src';
import { OutboxStore } from '../../src/outbox/store/outbox-store';
import { PostgresConnection } from '../../src/connections/postgres-connection';
import { ask, numericOption, spawnChild, stopChild, writeReport } from '../shared/child';
import { now, round } from '../shared/sse-client';

const CLIENTS = numericOption('clients', 1000);
const EVENTS = numericOption('events', 100_000);
const CUTS = numericOption('cuts', 2);
/** `--replay-cache-bytes N`: the app's outbox.replayCacheBytes (default: the module's; 0 = off). */
const CACHE_BYTES = process.argv.includes('--replay-cache-bytes')
  ? numericOption('replay-cache-bytes', 0)
  : undefined;
/** `--event-bytes N`: pad each event's JSON to about N bytes (default: no padding, ~30 bytes). */
const EVENT_BYTES = numericOption('event-bytes', 0);
const PAD = EVENT_BYTES > 30 ? 'x'.repeat(EVENT_BYTES - 30) : undefined;
const PER_TX = 100;
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const SCHEMA = `bench_${randomBytes(4).toString('hex')}`;

/** One resuming client: counts every sequence number it receives. */
class ResumingClient {
  readonly seen = new Uint8Array(EVENTS);
  duplicates = 0;
  resets = 0;
  received = 0;
  reconnects = 0;
  private lastEventId: string | undefined;
  private request?: http.ClientRequest;
  private cutsLeft = CUTS;
  private nextCutAt: number;

  constructor(
    private readonly port: number,
    private readonly onProgress: () => void,
  ) {
    this.nextCutAt = this.pickCut();
  }

  private pickCut(): number {
    return this.received + 1 + Math.floor(Math.random() * Math.max(1, EVENTS / (CUTS + 1)));
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { accept: 'text/event-stream' };
      if (this.lastEventId) headers['last-event-id'] = this.lastEventId;
      const request = http.get({
        host: '127.0.0.1',
        port: this.port,
        path: '/stream',
        agent: false,
        headers,
      });
      this.request = request;
      request.on('error', () => undefined);
      request.on('response', (response) => {
        let buffer = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          if (this.request !== request) return;
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            this.onFrame(frame);
            if (this.request !== request) return;
          }
        });
        resolve();
      });
      request.on('close', () => undefined);
      setTimeout(() => reject(new Error('connect timeout')), 30_000).unref();
    });
  }

  private onFrame(frame: string): void {
    if (frame.includes('event: reset')) {
      this.resets++;
      return;
    }
    const idAt = frame.indexOf('id: ');
    const seqAt = frame.indexOf('"seq":');
    if (idAt < 0 || seqAt < 0) return;
    this.lastEventId = frame.slice(idAt + 4, frame.indexOf('\n', idAt));
    const seq = Number(frame.slice(seqAt + 6, frame.indexOf('}', seqAt)));
    if (this.seen[seq]) this.duplicates++;
    else {
      this.seen[seq] = 1;
      this.received++;
    }
    this.onProgress();
    if (this.cutsLeft > 0 && this.received >= this.nextCutAt) {
      // Cut off mid-stream, as a network drop would; come back with the last id seen.
      this.cutsLeft--;
      this.nextCutAt = this.pickCut();
      this.reconnects++;
      this.request?.destroy();
      this.request = undefined;
      void this.connect().catch(() => undefined);
    }
  }

  close(): void {
    this.request?.destroy();
    this.request = undefined;
  }
}

async function main() {
  const admin = new Client({ connectionString: DATABASE_URL });
  await admin.connect();
  const options = resolveSseModuleOptions({
    postgres: { connectionString: DATABASE_URL, schema: SCHEMA, pool: { max: 4 } },
  });
  const postgres = new PostgresConnection(options);
  const outbox = new OutboxService(postgres, new OutboxStore(options, postgres));
  try {
    await outbox.migrate();
    const { child: server, ready } = await spawnChild(path.join(__dirname, '../outbox/server.js'), [
      DATABASE_URL,
      SCHEMA,
      String(EVENTS + 1),
      ...(CACHE_BYTES === undefined ? [] : [String(CACHE_BYTES)]),
    ]);
    let complete = 0;
    let finished: () => void = () => undefined;
    const allDone = new Promise<void>((resolve) => (finished = resolve));
    const clients: ResumingClient[] = [];
    const progress = (client: ResumingClient) => () => {
      if (client.received === EVENTS && ++complete === CLIENTS) finished();
    };
    for (let i = 0; i < CLIENTS; i += 100) {
      const batch = Array.from({ length: Math.min(100, CLIENTS - i) }, () => {
        const client: ResumingClient = new ResumingClient(ready.port, () => progress(client)());
        clients.push(client);
        return client.connect();
      });
      await Promise.all(batch);
    }

    const started = now();
    for (let seq = 0; seq < EVENTS; seq += PER_TX) {
      const events = Array.from({ length: Math.min(PER_TX, EVENTS - seq) }, (_, i) => ({
        topic: 'bench',
        // The padding goes first: the client reads the sequence number up to the closing brace.
        data: PAD ? { pad: PAD, seq: seq + i } : { seq: seq + i },
      }));
      await outbox.transaction((tx) => outbox.publish(tx, events));
    }
    const published = now();
    // Generous for the machine: at least 3 minutes, or 20 µs per delivery (100 M deliveries
    // need several minutes on 2 cores); a run that does not finish in time counts as lost.
    const waitMs = Math.max(180_000, (CLIENTS * EVENTS) / 50);
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, waitMs).unref());
    await Promise.race([allDone, timeout]);
    const caughtUp = now();
    clients.forEach((c) => c.close());
    const { stats } = await ask(server, { cmd: 'stats' }, 'stats');
    await stopChild(server);

    let lost = 0;
    for (const client of clients) lost += EVENTS - client.received;
    const report = {
      benchmark: 'resume',
      date: new Date().toISOString(),
      node: process.version,
      clients: CLIENTS,
      events: EVENTS,
      cutsPerClient: CUTS,
      eventBytes: EVENT_BYTES || undefined,
      reconnects: clients.reduce((n, c) => n + c.reconnects, 0),
      lost,
      duplicated: clients.reduce((n, c) => n + c.duplicates, 0),
      resets: clients.reduce((n, c) => n + c.resets, 0),
      publishSeconds: round((published - started) / 1000),
      catchUpAfterLastPublishMs: round(caughtUp - published),
      totalSeconds: round((caughtUp - started) / 1000),
      replayCacheBytes: CACHE_BYTES ?? 'default',
      replayedEvents: stats.replayed,
      replayedFromMemory: stats.replayedFromMemory,
    };
    console.log(
      `\nresume: ${CLIENTS} clients × ${EVENTS} events${EVENT_BYTES ? ` of ~${EVENT_BYTES} bytes` : ''}, ${CUTS} random cuts per client\n`,
    );
    console.table({
      result: {
        reconnects: report.reconnects,
        lost: report.lost,
        duplicated: report.duplicated,
        resets: report.resets,
        'publish s': report.publishSeconds,
        'catch-up ms': report.catchUpAfterLastPublishMs,
        replayed: report.replayedEvents,
        'from memory': report.replayedFromMemory,
      },
    });
    writeReport(EVENT_BYTES ? `resume-${EVENT_BYTES}b` : 'resume', report);
    process.exitCode = lost === 0 && report.duplicated === 0 && report.resets === 0 ? 0 : 1;
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
    await admin.end();
    await postgres.onApplicationShutdown();
  }
  process.exit(process.exitCode ?? 0);
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
