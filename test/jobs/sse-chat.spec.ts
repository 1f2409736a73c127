// @SseChat() with the AI SDK's own client (the real `ai` package): DefaultChatTransport from
// Node against two instances on real Redis, both platforms. A model from `ai/test` answers, with
// no network. What the issue asks: cut mid-answer and resumed elsewhere, the same message once;
// stop from another instance reaches the model call; a killed runner ends the stream with the
// protocol's error chunk.
import { Body, Controller } from '@nestjs/common';
import {
  convertToModelMessages,
  DefaultChatTransport,
  readUIMessageStream,
  streamText,
  type UIMessage,
  type UIMessageChunk,
} from 'ai';
import { MockLanguageModelV3, simulateReadableStream } from 'ai/test';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { SseChat, SseChatFinish, sseChatTurn, SseJobSignal } from '../../src';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import { deletePrefix, redisUrl, uniquePrefix } from '../support/redis';

const WORDS = Array.from({ length: 40 }, (_, i) => `w${i} `);
const ANSWER = WORDS.join('');

/** Each model call: its abort signal, for the stop test. */
const calls: AbortSignal[] = [];
const finishes: SseChatFinish<UIMessage>[] = [];
/** Delay between the model's words (ms): a test slows it to stop it mid-answer. */
let wordMs = 5;

function model() {
  return new MockLanguageModelV3({
    doStream: async ({ abortSignal }) => {
      if (abortSignal) calls.push(abortSignal);
      return {
        stream: simulateReadableStream({
          chunkDelayInMs: wordMs,
          chunks: [
            { type: 'stream-start', warnings: [] },
            { type: 'text-start', id: 't' },
            ...WORDS.map((delta) => ({ type: 'text-delta' as const, id: 't', delta })),
            { type: 'text-end', id: 't' },
            {
              type: 'finish',
              finishReason: { unified: 'stop', raw: 'stop' },
              usage: {
                inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
                outputTokens: { total: WORDS.length, text: WORDS.length, reasoning: 0 },
              },
            },
          ],
        }),
      };
    },
  });
}

@Controller()
class ChatController {
  @SseChat('api/chat')
  async chat(
    @Body() body: { id: string; messages: UIMessage[] },
    @SseJobSignal() signal: AbortSignal,
  ) {
    const result = streamText({
      model: model(),
      messages: await convertToModelMessages(body.messages),
      abortSignal: signal,
    });
    return sseChatTurn<UIMessage>(result.toUIMessageStream(), {
      onFinish: (finish) => void finishes.push(finish),
    });
  }
}

const question = (text: string): UIMessage[] => [
  { id: 'u1', role: 'user', parts: [{ type: 'text', text }] },
];
const textOf = (message: UIMessage | undefined) =>
  (message?.parts ?? []).map((part) => (part.type === 'text' ? part.text : '')).join('');

/** Every chunk of a stream, until it ends. */
async function drain(stream: ReadableStream<UIMessageChunk>): Promise<UIMessageChunk[]> {
  const chunks: UIMessageChunk[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<UIMessageChunk>) chunks.push(chunk);
  return chunks;
}

/** The message the AI SDK's client assembles from `chunks`. */
async function assemble(chunks: UIMessageChunk[]): Promise<UIMessage | undefined> {
  let message: UIMessage | undefined;
  const stream = new ReadableStream<UIMessageChunk>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  for await (const snapshot of readUIMessageStream<UIMessage>({ stream })) message = snapshot;
  return message;
}

/** Reads `count` chunks, then cuts the connection (the tab closed, the network went). */
async function readThenCut(
  transport: DefaultChatTransport<UIMessage>,
  chatId: string,
  count: number,
): Promise<UIMessageChunk[]> {
  const cut = new AbortController();
  const stream = await transport.sendMessages({
    chatId,
    messages: question('hi'),
    trigger: 'submit-message',
    messageId: undefined,
    abortSignal: cut.signal,
  });
  const reader = stream.getReader();
  const chunks: UIMessageChunk[] = [];
  while (chunks.length < count) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the stream ended after ${chunks.length} chunks`);
    chunks.push(value);
  }
  cut.abort();
  await reader.cancel().catch(() => undefined);
  return chunks;
}

const transport = (app: TestApp) =>
  new DefaultChatTransport<UIMessage>({ api: `${app.url}/api/chat` });

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.each(PLATFORMS)('@SseChat() with the AI SDK client, on %s', (platform) => {
  const prefix = uniquePrefix('chat');
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    const options = {
      redis: { url: redisUrl(), keyPrefix: prefix },
      jobs: { followIntervalMs: 20 },
    };
    a = await startApp([ChatController], options, { platform });
    b = await startApp([ChatController], options, { platform });
  });
  beforeEach(() => {
    calls.length = 0;
    finishes.length = 0;
    wordMs = 5;
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await deletePrefix(redisUrl(), prefix);
  });

  it('cut mid-answer on A, resumed on B: the same message as an uncut run, once; then 204', async () => {
    const uncut = await assemble(
      await drain(
        await transport(a).sendMessages({
          chatId: `${platform}-uncut`,
          messages: question('hi'),
          trigger: 'submit-message',
          messageId: undefined,
          abortSignal: undefined,
        }),
      ),
    );
    expect(textOf(uncut)).toBe(ANSWER);

    wordMs = 20;
    const chatId = `${platform}-cut`;
    const before = await readThenCut(transport(a), chatId, 6);
    expect(before.some((chunk) => chunk.type === 'text-delta')).toBe(true);
    // useChat with resume: true — the resumed stream replays the turn from its start.
    const resumed = await transport(b).reconnectToStream({ chatId });
    expect(resumed).not.toBeNull();
    const chunks = await drain(resumed!);
    const message = await assemble(chunks);
    expect(textOf(message)).toBe(ANSWER);
    expect(chunks.filter((chunk) => chunk.type === 'start')).toHaveLength(1);
    expect(chunks[chunks.length - 1].type).toBe('finish');

    expect(await transport(b).reconnectToStream({ chatId })).toBeNull();
    expect(await transport(a).reconnectToStream({ chatId: `${platform}-never` })).toBeNull();
    await until(() => finishes.length === 2, 'onFinish of both turns');
    const finished = finishes.find((finish) => finish.chatId === chatId)!;
    expect(finished).toMatchObject({ reason: 'done', isAborted: false });
    expect(textOf(finished.message)).toBe(ANSWER);
  });

  it('stop from B ends the turn running on A: the model call is aborted, onFinish gets the partial message once, then 204', async () => {
    wordMs = 50;
    const chatId = `${platform}-stop`;
    const stream = await transport(a).sendMessages({
      chatId,
      messages: question('hi'),
      trigger: 'submit-message',
      messageId: undefined,
      abortSignal: undefined,
    });
    const reader = stream.getReader();
    const seen: UIMessageChunk[] = [];
    while (seen.filter((chunk) => chunk.type === 'text-delta').length < 3)
      seen.push((await reader.read()).value!);

    const stop = await fetch(`${b.url}/api/chat/${encodeURIComponent(chatId)}/stream`, {
      method: 'DELETE',
    });
    expect(stop.status).toBe(202);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      seen.push(value);
    }
    expect(seen[seen.length - 1]).toEqual({ type: 'abort' });
    expect(calls).toHaveLength(1);
    expect(calls[0].aborted).toBe(true);
    await until(() => finishes.length === 1, 'onFinish');
    await new Promise((resolve) => setTimeout(resolve, 100)); // a second call would be a bug
    expect(finishes).toHaveLength(1);
    expect(finishes[0]).toMatchObject({ chatId, reason: 'cancelled', isAborted: true });
    const partial = textOf(finishes[0].message);
    expect(partial.length).toBeGreaterThan(0);
    expect(ANSWER.startsWith(partial)).toBe(true);
    expect(partial).not.toBe(ANSWER);
    expect(await transport(b).reconnectToStream({ chatId })).toBeNull();
    expect((await fetch(`${b.url}/api/chat/${chatId}/stream`, { method: 'DELETE' })).status).toBe(
      204,
    );
  });

  it('a new turn supersedes the running one: it ends aborted, the new one runs', async () => {
    wordMs = 50;
    const chatId = `${platform}-supersede`;
    const first = await transport(a).sendMessages({
      chatId,
      messages: question('first'),
      trigger: 'submit-message',
      messageId: undefined,
      abortSignal: undefined,
    });
    wordMs = 1;
    const second = await transport(b).sendMessages({
      chatId,
      messages: question('again'),
      trigger: 'regenerate-message',
      messageId: undefined,
      abortSignal: undefined,
    });
    const [firstChunks, secondChunks] = await Promise.all([drain(first), drain(second)]);
    expect(firstChunks[firstChunks.length - 1]).toEqual({ type: 'abort' });
    expect(textOf(await assemble(secondChunks))).toBe(ANSWER);
    await until(() => finishes.length === 2, 'onFinish of both turns');
    expect(finishes.map((finish) => finish.reason).sort()).toEqual(['cancelled', 'done']);
  });

  it('speaks the UI message stream: its header, one JSON chunk per data line, [DONE] last', async () => {
    const response = await fetch(`${a.url}/api/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: `${platform}-wire`, messages: question('hi') }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(response.headers.get('x-vercel-ai-ui-message-stream')).toBe('v1');
    const text = await response.text();
    const data = text
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => line.slice(6));
    expect(data[data.length - 1]).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((line) => JSON.parse(line) as UIMessageChunk);
    expect(chunks[0].type).toBe('start');
    expect(chunks[chunks.length - 1].type).toBe('finish');
    // Nothing but data, ids, retry and comments: the AI SDK's parser reads every event's data.
    expect(text.split('\n').filter((l) => l && !/^(data|id|retry): |^:/.test(l))).toEqual([]);
  });

  it('refuses a start without the chat id the AI SDK sends, with a message naming it', async () => {
    const response = await fetch(`${a.url}/api/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: question('hi') }),
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toMatch(/the request body's `id`/);
  });
});

describe('@SseChat() turns that end otherwise', () => {
  const prefix = uniquePrefix('chatend');
  let t: TestApp;

  @Controller()
  class FailingController {
    @SseChat('api/failing')
    chat() {
      return sseChatTurn(
        (async function* () {
          yield { type: 'start' };
          yield { type: 'text-start', id: 't' };
          yield { type: 'text-delta', id: 't', delta: 'half ' };
          throw new Error('the provider said: secret-api-key-123 is invalid');
        })(),
        { onFinish: (finish) => void finishes.push(finish as SseChatFinish<UIMessage>) },
      );
    }
  }

  beforeAll(async () => {
    t = await startApp([ChatController, FailingController], {
      redis: { url: redisUrl(), keyPrefix: prefix },
      jobs: { timeoutMs: 300 },
    });
  });
  beforeEach(() => {
    calls.length = 0;
    finishes.length = 0;
  });
  afterAll(async () => {
    await t?.close();
    await deletePrefix(redisUrl(), prefix);
  });

  it('past jobs.timeoutMs: the error chunk, the model call aborted, onFinish with the partial message', async () => {
    wordMs = 50;
    const chunks = await drain(
      await transport(t).sendMessages({
        chatId: 'slow',
        messages: question('hi'),
        trigger: 'submit-message',
        messageId: undefined,
        abortSignal: undefined,
      }),
    );
    expect(chunks[chunks.length - 1]).toEqual({
      type: 'error',
      errorText: 'The job ran past jobs.timeoutMs',
    });
    expect(calls[0].aborted).toBe(true);
    await until(() => finishes.length === 1, 'onFinish');
    expect(finishes[0]).toMatchObject({ chatId: 'slow', reason: 'timeout', isAborted: true });
    expect(ANSWER.startsWith(textOf(finishes[0].message))).toBe(true);
  });

  it('a handler that fails mid-answer: the error chunk says nothing of the error, onFinish has what came', async () => {
    const response = await fetch(`${t.url}/api/failing`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'failing', messages: question('hi') }),
    });
    const text = await response.text();
    expect(text).not.toContain('secret-api-key');
    expect(text).toMatch(
      /data: \{"type":"error","errorText":"Internal Server Error"\}\n\ndata: \[DONE\]\n\n$/,
    );
    await until(() => finishes.length === 1, 'onFinish');
    expect(finishes[0]).toMatchObject({ reason: 'failed', isAborted: true });
    expect(textOf(finishes[0].message)).toBe('half ');
  });
});

describe('@SseChat() when the runner is killed mid-answer', () => {
  const prefix = uniquePrefix('chatkill');
  afterAll(() => deletePrefix(redisUrl(), prefix));

  it('ends the stream followed on another instance with the protocol’s error chunk and [DONE]', async () => {
    const child = fork(path.join(__dirname, 'job-child.js'), [], {
      env: { ...process.env, REDIS_URL: redisUrl(), KEY_PREFIX: prefix },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const exited = once(child, 'exit');
    const other = await startApp([ChatController], {
      redis: { url: redisUrl(), keyPrefix: prefix },
      jobs: { followIntervalMs: 20 },
    });
    try {
      const [ready] = (await once(child, 'message')) as [{ port: number }];
      const runner = new DefaultChatTransport<UIMessage>({
        api: `http://127.0.0.1:${ready.port}/api/chat`,
      });
      await readThenCut(runner, 'killed', 4);
      const resumed = await new DefaultChatTransport<UIMessage>({
        api: `${other.url}/api/chat`,
      }).reconnectToStream({ chatId: 'killed' });
      const reader = resumed!.getReader();
      const chunks: UIMessageChunk[] = [];
      while (chunks.filter((chunk) => chunk.type === 'text-delta').length < 3)
        chunks.push((await reader.read()).value!);
      child.kill('SIGKILL');
      await exited;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        chunks.push(value);
      }
      expect(chunks[chunks.length - 1]).toEqual({
        type: 'error',
        errorText: 'The instance running the job stopped before it finished',
      });
    } finally {
      child.kill('SIGKILL');
      await other.close();
    }
  });
});
