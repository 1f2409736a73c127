/**
 * A load-generator process of the `streams` and `storm` benchmarks (driven over IPC by their
 * main): holds its share of the streams, each from a loopback source address of its own range
 * (one address holds at most ~28k connections to one port, one process at most its file
 * limit), parses them as EventSource does, and reports what it saw. It exits when its parent
 * goes, so no load generator outlives a bench.
 *
 * Commands: `open` { port, path, count, addresses, concurrency, timeoutMs } → `opened` { open,
 * errors }; `latencies` → { values } (publish → receipt, ms, since the last ask); `close`.
 * Storm commands: `track` (check ids: every event once, in order, per stream), `reconnect` {
 * port } (EventSource: after the stream's `retry:`, with its Last-Event-ID), `report`.
 */
import * as http from 'node:http';
import { performance } from 'node:perf_hooks';

const now = () => performance.timeOrigin + performance.now();

interface Stream {
  request?: http.ClientRequest;
  address: string;
  /** The last `id:` seen, the last `retry:`. */
  lastId?: string;
  retryMs: number;
  /** Sequence numbers seen (storm): every event's data carries `"seq":n`. */
  lastSeq: number;
  live: boolean;
  /** Time the stream last (re)opened with 200. */
  openedAt?: number;
}

const streams: Stream[] = [];
let latencies: number[] = [];
const errors = new Map<string, number>();
const storm = { lost: 0, duplicated: 0, resets: 0, refused: 0, reconnects: 0, backAt: 0 };
let tracking = false;
let port = 0;
let path = '/stream';

const count = (key: string) => errors.set(key, (errors.get(key) ?? 0) + 1);
const send = (message: object) => process.send?.(message);

process.on('disconnect', () => process.exit(0));

/** Opens one stream; resolves true on a 200 event stream, false (counted) otherwise. */
function open(stream: Stream, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean, cause?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (cause) count(cause);
      resolve(ok);
    };
    const timer = setTimeout(() => {
      request.destroy();
      done(false, 'timeout');
      // As EventSource after a failed connection: again after retry:.
      if (tracking) scheduleReconnect(stream);
    }, timeoutMs);
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (stream.lastId !== undefined) headers['last-event-id'] = stream.lastId;
    const request = http.get({
      host: '127.0.0.1',
      port,
      path,
      localAddress: stream.address,
      agent: false,
      headers,
    });
    stream.request = request;
    request.on('error', (error: NodeJS.ErrnoException) => {
      if (settled) return; // after the response: its 'close' reconnects
      done(false, error.code ?? error.message);
      if (tracking) scheduleReconnect(stream);
    });
    request.on('response', (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        storm.refused++;
        // EventSource gives up on a non-200; the storm's clients retry after Retry-After.
        const after = Number(response.headers['retry-after'] ?? 1) * 1000;
        done(false, `status ${response.statusCode}`);
        if (tracking) scheduleReconnect(stream, after);
        return;
      }
      stream.live = true;
      stream.openedAt = now();
      done(true);
      parse(stream, response);
    });
  });
}

/** EventSource's parsing, as much as the benchmarks need: id, retry, data, event type. */
function parse(stream: Stream, response: http.IncomingMessage): void {
  let buffer = '';
  response.setEncoding('utf8');
  response.on('data', (chunk: string) => {
    const received = now();
    buffer += chunk;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      // Only what the benchmarks read, with indexOf: 15,000 streams × 20 events/s is 300,000
      // blocks a second on a machine that also runs the server.
      if (block.charCodeAt(0) === 58) continue; // ':' a comment (heartbeat)
      const idLine = block.startsWith('id: ') ? 0 : block.indexOf('\nid: ') + 1;
      if (idLine >= 0 && (idLine > 0 || block.startsWith('id: ')))
        stream.lastId = block.slice(idLine + 4, lineEnd(block, idLine + 4));
      const retryAt = block.indexOf('retry: ');
      if (retryAt >= 0) stream.retryMs = Number(block.slice(retryAt + 7, lineEnd(block, retryAt)));
      const dataAt = block.indexOf('data: ');
      if (dataAt < 0) continue;
      if (block.includes('event: reset')) storm.resets++;
      const t = tracking ? -1 : block.indexOf('"t":', dataAt);
      if (t >= 0) latencies.push(received - parseFloat(block.slice(t + 4)));
      const at = block.indexOf('"seq":', dataAt);
      if (tracking && at >= 0) {
        const n = parseInt(block.slice(at + 6), 10);
        if (n <= stream.lastSeq) storm.duplicated++;
        else {
          if (stream.lastSeq > 0) storm.lost += n - stream.lastSeq - 1;
          stream.lastSeq = n;
        }
      }
    }
  });
  response.on('error', () => undefined);
  response.on('close', () => {
    if (!stream.live) return;
    stream.live = false;
    if (tracking) scheduleReconnect(stream);
  });
}

function lineEnd(block: string, from: number): number {
  const end = block.indexOf('\n', from);
  return end < 0 ? block.length : end;
}

/** As EventSource: after `retry:` (or the server's Retry-After), with the last id. */
function scheduleReconnect(stream: Stream, afterMs = stream.retryMs): void {
  setTimeout(() => {
    storm.reconnects++;
    void open(stream, 30_000).then((ok) => {
      if (ok && streams.every((s) => s.live)) storm.backAt ||= now();
    });
  }, afterMs);
}

/** Opens `count` streams, `concurrency` at a time. */
async function openAll(message: {
  port: number;
  path: string;
  count: number;
  addresses: string[];
  concurrency: number;
  timeoutMs: number;
}): Promise<void> {
  port = message.port;
  path = message.path;
  const from = streams.length;
  for (let i = 0; i < message.count; i++) {
    streams.push({
      address: message.addresses[i % message.addresses.length],
      retryMs: 3000,
      lastSeq: 0,
      live: false,
    });
  }
  let next = from;
  let open_ = 0;
  const worker = async () => {
    while (next < streams.length) {
      const stream = streams[next++];
      if (await open(stream, message.timeoutMs)) open_++;
    }
  };
  await Promise.all(Array.from({ length: message.concurrency }, worker));
  send({ cmd: 'opened', open: open_, errors: Object.fromEntries(errors) });
}

process.on('message', (message: { cmd: string; [key: string]: any }) => {
  if (message.cmd === 'open') void openAll(message as never);
  if (message.cmd === 'latencies') {
    send({ cmd: 'latencies', values: latencies });
    latencies = [];
  }
  if (message.cmd === 'track') {
    tracking = true;
    send({ cmd: 'tracking' });
  }
  if (message.cmd === 'reconnect') {
    // The instance these streams were on died: EventSource sees the error, waits `retry:`, and
    // reconnects — here to the instance that is left.
    port = message.port;
    storm.backAt = 0;
    send({ cmd: 'reconnecting' });
  }
  if (message.cmd === 'report') {
    const last = Number(message.last ?? 0);
    send({
      cmd: 'report',
      live: streams.filter((s) => s.live).length,
      total: streams.length,
      caughtUpTo: Math.min(...streams.map((s) => s.lastSeq)),
      /** Events after each stream's last one, up to `last` (the storm's final check). */
      behind: last ? streams.reduce((sum, s) => sum + Math.max(0, last - s.lastSeq), 0) : 0,
      ...storm,
      errors: Object.fromEntries(errors),
    });
  }
  if (message.cmd === 'close') {
    tracking = false;
    for (const stream of streams) stream.request?.destroy();
    send({ cmd: 'closed' });
  }
});

send({ cmd: 'ready' });
