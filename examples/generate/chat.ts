/**
 * The AI SDK's `useChat` on `@SseChat()` (docs/ai-sdk.md): `/chat` is a page on the AI SDK's own
 * client (`AbstractChat` + `DefaultChatTransport`, what `useChat` wraps; bundled from the `ai`
 * package when first asked for), `POST /api/chat` starts a turn, `GET /api/chat/:id/stream`
 * resumes it — reload mid-answer and the answer continues, once — `DELETE` there stops it, and
 * `onFinish` keeps each finished (or stopped) answer for `GET /api/chat/:id/messages`.
 */
import { Body, Controller, Get, Header, Injectable, Param } from '@nestjs/common';
import { convertToModelMessages, streamText, type UIMessage } from 'ai';
import { MockLanguageModelV3, simulateReadableStream } from 'ai/test';
import * as path from 'node:path';
import { SseChat, sseChatTurn, SseJobSignal } from '../../src';
import { answerTo, FakeModel } from './fake-model';
import { CHAT_CLIENT, CHAT_PAGE } from './chat-page';

/** The chats' messages, as an app would keep them in its database (here: in memory). */
@Injectable()
export class ChatStore {
  private readonly chats = new Map<string, UIMessage[]>();

  messages(chatId: string): UIMessage[] {
    return this.chats.get(chatId) ?? [];
  }

  /** The client sends the whole conversation with each turn: keep it (the user's message is new). */
  started(chatId: string, messages: UIMessage[]): void {
    this.chats.set(chatId, messages);
  }

  finished(chatId: string, message: UIMessage): void {
    this.chats.set(chatId, [...this.messages(chatId), message]);
  }
}

/** A language model with no network: the demo's fixed answer, one word per `tokenMs`. */
export function demoLanguageModel(prompt: string, words: number, wordMs: number) {
  const deltas = answerTo(prompt, words);
  return new MockLanguageModelV3({
    doStream: async () => ({
      stream: simulateReadableStream({
        initialDelayInMs: wordMs,
        chunkDelayInMs: wordMs,
        chunks: [
          { type: 'stream-start', warnings: [] },
          { type: 'text-start', id: 'answer' },
          ...deltas.map((delta) => ({ type: 'text-delta' as const, id: 'answer', delta })),
          { type: 'text-end', id: 'answer' },
          {
            type: 'finish',
            finishReason: { unified: 'stop', raw: 'stop' },
            usage: {
              inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
              outputTokens: { total: words, text: words, reasoning: 0 },
            },
          },
        ],
      }),
    }),
  });
}

let bundled: Promise<string> | undefined;
/** The page's client: the `ai` package bundled for the browser (esbuild, once). */
function clientBundle(): Promise<string> {
  bundled ??= import('esbuild').then(async (esbuild) => {
    const result = await esbuild.build({
      stdin: { contents: CHAT_CLIENT, resolveDir: path.join(require.resolve('ai'), '../../..') },
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      minify: true,
      write: false,
      logLevel: 'silent',
    });
    return result.outputFiles[0].text;
  });
  return bundled;
}

@Controller()
export class ChatController {
  constructor(
    private readonly store: ChatStore,
    private readonly model: FakeModel,
  ) {}

  @Get('chat')
  @Header('Content-Type', 'text/html; charset=utf-8')
  page() {
    return CHAT_PAGE;
  }

  @Get('chat.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  client() {
    return clientBundle();
  }

  @Get('api/chat/:id/messages')
  messages(@Param('id') chatId: string) {
    return this.store.messages(chatId);
  }

  @SseChat('api/chat')
  async chat(
    @Body() body: { id: string; messages: UIMessage[] },
    @SseJobSignal() signal: AbortSignal,
  ) {
    this.store.started(body.id, body.messages);
    this.model.generations++;
    const last = body.messages[body.messages.length - 1];
    const prompt = last?.parts.map((part) => (part.type === 'text' ? part.text : '')).join('');
    const result = streamText({
      model: demoLanguageModel(prompt ?? '', this.model.tokens, this.model.tokenMs),
      messages: await convertToModelMessages(body.messages),
      abortSignal: signal,
    });
    return sseChatTurn<UIMessage>(result.toUIMessageStream({ originalMessages: body.messages }), {
      onFinish: ({ chatId, message }) => {
        if (message) this.store.finished(chatId, message);
      },
    });
  }
}
