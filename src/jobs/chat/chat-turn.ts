import type { SseJobErrorReason } from '../job-problem';

/** What a chat turn's `onFinish` is given, once, however the turn ended. */
export interface SseChatFinish<MESSAGE = unknown> {
  /** The chat (`id` of the request body). */
  chatId: string;
  /**
   * The assistant message as the AI SDK's client assembles it (`readUIMessageStream`) from
   * the chunks the handler emitted: whole when the turn completed, partial when it was stopped,
   * superseded, timed out or failed; undefined when nothing was emitted.
   */
  message: MESSAGE | undefined;
  /** `done`, or why it ended: `cancelled` (stop, or a newer turn), `timeout`, `failed`, `shutdown`, `too-large`, `log-unavailable`, `abandoned`. */
  reason: 'done' | SseJobErrorReason;
  /** True unless the turn completed. */
  isAborted: boolean;
}

export interface SseChatTurnOptions<MESSAGE = unknown> {
  /**
   * Persist the turn: called once on the instance running it, when it ends for any reason. Not
   * called when that process dies mid-turn (its streams then end with the protocol's error
   * chunk on every instance; the chunks logged so far stay in the turn's log until retention).
   */
  onFinish?: (finish: SseChatFinish<MESSAGE>) => void | Promise<void>;
}

/** What an `@SseChat()` handler may return: UI message chunks, as an Observable, async iterable or stream. */
export type SseChatChunks = unknown;

/** A turn's chunks with its options; see {@link sseChatTurn}. */
export class SseChatTurn<MESSAGE = unknown> {
  constructor(
    readonly chunks: SseChatChunks,
    readonly options: SseChatTurnOptions<MESSAGE> = {},
  ) {}
}

/**
 * What an `@SseChat()` handler returns to be told when the turn ends:
 *
 * ```ts
 * return sseChatTurn(result.toUIMessageStream(), {
 *   onFinish: ({ chatId, message }) => this.chats.saveAssistantMessage(chatId, message),
 * });
 * ```
 */
export function sseChatTurn<MESSAGE = unknown>(
  chunks: SseChatChunks,
  options: SseChatTurnOptions<MESSAGE> = {},
): SseChatTurn<MESSAGE> {
  return new SseChatTurn(chunks, options);
}
