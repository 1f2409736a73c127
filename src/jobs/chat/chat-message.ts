/**
 * Assembles a turn's assistant message from its chunks as the AI SDK's own client does, with the
 * `ai` package's `readUIMessageStream` (an optional peer: loaded only for turns with `onFinish`).
 */
export class ChatMessageAssembly {
  private readonly controller: ReadableStreamDefaultController<unknown>;
  private latest: unknown;
  private readonly reading: Promise<void>;

  constructor() {
    const ai = loadAi();
    let controller!: ReadableStreamDefaultController<unknown>;
    const chunks = new ReadableStream<unknown>({ start: (c) => (controller = c) });
    this.controller = controller;
    const messages = ai.readUIMessageStream({
      stream: chunks,
      // A chunk the client would reject fails the assembly here too; what was assembled stays.
      onError: () => undefined,
    });
    this.reading = (async () => {
      for await (const message of messages) this.latest = message;
    })().catch(() => undefined);
  }

  push(chunk: unknown): void {
    try {
      this.controller.enqueue(chunk);
    } catch {
      // closed: the turn has ended
    }
  }

  /** The message so far, once every pushed chunk is read. */
  async finish(): Promise<unknown> {
    try {
      this.controller.close();
    } catch {
      // already closed
    }
    await this.reading;
    return this.latest;
  }
}

interface AiPackage {
  readUIMessageStream(options: {
    stream: ReadableStream<unknown>;
    onError?: (error: unknown) => void;
  }): AsyncIterable<unknown>;
}

function loadAi(): AiPackage {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('ai') as AiPackage;
  } catch (error) {
    throw new Error(
      "@SseChat() turns with onFinish assemble the message with the 'ai' package's " +
        `readUIMessageStream; install it (npm install ai): ${(error as Error).message}`,
    );
  }
}
