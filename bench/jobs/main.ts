/**
 * Job streams: `--jobs` concurrent jobs × `--events` tokens (~20 bytes, `--every-ms` apart), each
 * client cut at random `--cuts` times and resuming from its Last-Event-ID on the resume URL.
 * Checks every client got every token once, in order, then `done`; reports server CPU per
 * delivered event and Redis commands per event, against the same handler as a plain stream
 * (`@Sse({ method: 'POST' })`, no log, no cuts): the cost of durability, as a ratio. Then the
 * same in the AI SDK's framing: `@SseChat()` (cut and resumed by chat id) against the `ai`
 * package piping the same chunks to the response itself (`pipeUIMessageStreamToResponse`, no
 * log, no cuts).
 *
 *   npm run bench -- jobs [--jobs 1000] [--events 200] [--every-ms 20] [--cuts 2] [--ramp-ms 1000]
 *
 * Uses REDIS_URL (default redis://127.0.0.1:6379), under a key prefix of its own.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import Redis from 'ioredis';
import { ask, numericOption, spawnChild, stopChild, writeReport } from '../shared/child';

const JOBS = numericOption('jobs', 1000);
const EVENTS = numericOption('events', 200);
const EVERY_MS = numericOption('every-ms', 20);
const CUTS = numericOption('cuts', 2);
const RAMP_MS = numericOption('ramp-ms', 1000);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

type Mode = 'job' | 'plain' | 'ai-chat' | 'ai-plain';
const durable = (mode: Mode) => mode === 'job' || mode === 'ai-chat';

interface Client {
  /** The chat's id (`ai-chat`). */
  chatId: string;
  tokens: string[];
  done: boolean;
  /** Planned cuts done. */
  cuts: number;
  /** Unplanned reconnects (the stream ended early or failed), and why. */
  reconnects: number;
  causes: string[];
  location?: string;
  lastId?: string;
  errors: string[];
}

/** Reads one response as an event stream until it ends, or until `cutAfter` events (then aborts). */
async function read(
  url: string,
  init: RequestInit,
  client: Client,
  cutAfter: number,
  ai: boolean,
): Promise<{ location: string | null; cut: boolean }> {
  const controller = new AbortController();
  // Node's fetch opens as many connections to one origin as there are streams.
  const response = await fetch(url, { ...init, signal: controller.signal });
  if (response.status !== 200) {
    client.errors.push(`status ${response.status}`);
    return { location: null, cut: false };
  }
  const location = response.headers.get('content-location');
  if (location) client.location ??= location;
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let seen = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { location, cut: false };
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id: string | undefined;
      let type = 'message';
      let data: string | undefined;
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) id = line.slice(4);
        else if (line.startsWith('event: ')) type = line.slice(7);
        else if (line.startsWith('data: ')) data = line.slice(6);
      }
      if (data === undefined) continue;
      client.lastId = id ?? client.lastId;
      if (ai) {
        // The AI SDK's framing: every event is a JSON chunk, then [DONE].
        if (data === '[DONE]') client.done = true;
        else {
          const chunk = JSON.parse(data) as { type: string; delta?: string };
          if (chunk.type === 'text-delta') client.tokens.push(chunk.delta!);
          if (chunk.type === 'error' || chunk.type === 'abort') client.errors.push(data);
        }
      } else {
        if (type === 'token') client.tokens.push(data);
        if (type === 'done') client.done = true;
        if (type === 'error') client.errors.push(data);
      }
      if (++seen >= cutAfter && !client.done) {
        controller.abort();
        await reader.cancel().catch(() => undefined);
        return { location, cut: true };
      }
    }
  }
}

/** What failed, as undici reports it (its message is only "fetch failed"). */
function describe(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

/**
 * One client: starts its job, is cut at `CUTS` random events and resumes each time from its
 * Last-Event-ID; like EventSource, it also reconnects when the stream ends early or fails
 * (counted apart, with the cause).
 */
async function runClient(port: number, mode: Mode): Promise<Client> {
  const ai = mode.startsWith('ai-');
  const client: Client = {
    chatId: randomBytes(8).toString('hex'),
    tokens: [],
    done: false,
    cuts: 0,
    reconnects: 0,
    causes: [],
    errors: [],
  };
  const base = `http://127.0.0.1:${port}`;
  const cutAt = Array.from(
    { length: durable(mode) ? CUTS : 0 },
    () => 1 + Math.floor(Math.random() * (EVENTS - 2)),
  ).sort((a, b) => a - b);
  const untilCut = () =>
    client.cuts < cutAt.length ? Math.max(1, cutAt[client.cuts] - client.tokens.length) : Infinity;
  const after = (outcome: { cut: boolean }) => {
    if (outcome.cut) client.cuts++;
    else if (!client.done && durable(mode)) {
      client.reconnects++;
      client.causes.push('ended early');
    }
  };
  // The start, again while the request never reached the server (no response at all: a
  // connection refused or timed out on a saturated machine), which is safe to repeat.
  for (let attempt = 0; attempt < 5 && !client.location && !client.done; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    if (!(await start())) break;
  }
  async function start(): Promise<boolean> {
    try {
      after(
        await read(
          `${base}/generate`,
          {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ id: client.chatId, events: EVENTS, everyMs: EVERY_MS }),
          },
          client,
          untilCut(),
          ai,
        ),
      );
      return false;
    } catch (error) {
      client.reconnects++;
      client.causes.push(describe(error));
      return client.location === undefined && /CONNECT|ECONNREFUSED/.test(describe(error));
    }
  }
  // A chat's turn resumes by the chat's id (it has no Content-Location).
  if (mode === 'ai-chat') client.location = `/generate/${client.chatId}/stream`;
  while (durable(mode) && !client.done) {
    if (!client.location) {
      client.errors.push(`the start failed: ${client.causes.join(', ')}`);
      break;
    }
    if (client.reconnects > 20) {
      client.errors.push(`gave up after 20 reconnects: ${client.causes.slice(-3).join(', ')}`);
      break;
    }
    try {
      after(
        await read(
          `${base}${client.location}`,
          { headers: { 'last-event-id': client.lastId ?? '0' } },
          client,
          untilCut(),
          ai,
        ),
      );
    } catch (error) {
      client.reconnects++;
      client.causes.push(describe(error));
    }
  }
  return client;
}

async function redisCommands(redis: Redis): Promise<number> {
  const info = await redis.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)![1]);
}

async function run(mode: Mode) {
  const keyPrefix = `bench-jobs:${randomBytes(4).toString('hex')}:`;
  const { child, ready } = await spawnChild(path.join(__dirname, 'server.js'), [
    mode,
    REDIS_URL,
    keyPrefix,
  ]);
  const redis = new Redis(REDIS_URL);
  try {
    const cpuBefore = (await ask(child, { cmd: 'cpu' }, 'cpu')).usage;
    const commandsBefore = await redisCommands(redis);
    const startedAt = Date.now();
    const clients = await Promise.all(
      Array.from({ length: JOBS }, async (_, i) => {
        // Starts spread over RAMP_MS, as a thousand users do not press Enter in the same ms.
        await new Promise((resolve) => setTimeout(resolve, (i * RAMP_MS) / JOBS));
        return runClient(ready.port, mode);
      }),
    );
    const seconds = (Date.now() - startedAt) / 1000;
    const cpuAfter = (await ask(child, { cmd: 'cpu' }, 'cpu')).usage;
    // Less the second INFO itself.
    const commands = Math.max(0, (await redisCommands(redis)) - commandsBefore - 1);
    const expected = Array.from(
      { length: EVENTS },
      (_, i) => `token-${String(i).padStart(6, '0')}-abcdef`,
    );
    let lost = 0;
    let duplicated = 0;
    let unfinished = 0;
    let errors = 0;
    for (const client of clients) {
      const counts = new Map<string, number>();
      for (const token of client.tokens) counts.set(token, (counts.get(token) ?? 0) + 1);
      lost += expected.filter((t) => !counts.has(t)).length;
      duplicated += [...counts.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
      if (durable(mode) && !client.done) unfinished++; // a plain stream has no end event
      if (client.errors.length > 0) errors++;
      if (client.tokens.join() !== expected.join() && counts.size === EVENTS && duplicated === 0)
        lost++; // out of order counts as lost
    }
    const sample = clients.flatMap((c) => c.errors).slice(0, 5);
    if (sample.length > 0) console.log(`${mode}: client errors (first 5): ${sample.join(' | ')}`);
    const causes = new Map<string, number>();
    for (const cause of clients.flatMap((c) => c.causes))
      causes.set(cause, (causes.get(cause) ?? 0) + 1);
    const delivered = clients.reduce((sum, c) => sum + c.tokens.length, 0);
    const cpuUs = cpuAfter.user - cpuBefore.user + cpuAfter.system - cpuBefore.system;
    const result = {
      mode,
      jobs: JOBS,
      eventsPerJob: EVENTS,
      cutsPerClient: durable(mode) ? CUTS : 0,
      resumes: clients.reduce((sum, c) => sum + c.cuts, 0),
      reconnects: clients.reduce((sum, c) => sum + c.reconnects, 0),
      reconnectCauses: Object.fromEntries(causes),
      seconds,
      delivered,
      lost,
      duplicated,
      unfinished,
      clientsWithErrors: errors,
      serverCpuMs: Math.round(cpuUs / 1000),
      serverCpuUsPerEvent: Math.round((cpuUs / delivered) * 10) / 10,
      redisCommands: commands,
      redisCommandsPerEvent: Math.round((commands / (JOBS * EVENTS)) * 100) / 100,
    };
    console.log(JSON.stringify(result));
    return result;
  } finally {
    await stopChild(child);
    const keys = await redis.keys(`${keyPrefix}*`);
    for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
    redis.disconnect();
  }
}

async function main() {
  const plain = await run('plain');
  const job = await run('job');
  const aiPlain = await run('ai-plain');
  const aiChat = await run('ai-chat');
  const ratio = Math.round((job.serverCpuUsPerEvent / plain.serverCpuUsPerEvent) * 100) / 100;
  const aiRatio =
    Math.round((aiChat.serverCpuUsPerEvent / aiPlain.serverCpuUsPerEvent) * 100) / 100;
  console.log(
    `\njobs: ${JOBS} × ${EVENTS} events, ${EVERY_MS} ms apart; ${CUTS} cuts per client\n` +
      `job streams: ${job.lost} lost, ${job.duplicated} duplicated, ${job.unfinished} unfinished, ` +
      `${job.resumes} resumes + ${job.reconnects} unplanned reconnects ` +
      `(${JSON.stringify(job.reconnectCauses)}); server CPU ${job.serverCpuUsPerEvent} µs/event, ` +
      `${job.redisCommandsPerEvent} Redis commands/event\n` +
      `plain streams: server CPU ${plain.serverCpuUsPerEvent} µs/event\n` +
      `the cost of durability: ×${ratio} server CPU per delivered event\n` +
      `AI SDK framing: @SseChat() ${aiChat.lost} lost, ${aiChat.duplicated} duplicated, ` +
      `${aiChat.unfinished} unfinished, ${aiChat.resumes} resumes + ${aiChat.reconnects} ` +
      `unplanned; server CPU ${aiChat.serverCpuUsPerEvent} µs/chunk against ` +
      `${aiPlain.serverCpuUsPerEvent} µs/chunk piped by the ai package without durability: ×${aiRatio}`,
  );
  writeReport('jobs', {
    benchmark: 'jobs',
    date: new Date().toISOString(),
    node: process.version,
    plain,
    job,
    cpuRatio: ratio,
    aiPlain,
    aiChat,
    aiCpuRatio: aiRatio,
  });
  const broken = [job, aiChat].some((r) => r.lost + r.duplicated + r.unfinished > 0);
  process.exit(broken ? 1 : 0);
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
