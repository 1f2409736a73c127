import {
  applyDecorators,
  Delete,
  Get,
  Post,
  Res,
  SetMetadata,
  UseInterceptors,
} from '@nestjs/common';
import { wrapWithHiddenArgument } from '../../common/hidden-argument';
import { SseHandlerResult } from '../../sse/sse-route-options';
import { addCompanionRoute } from '../job-routes';
import { CHAT_ID_PARAM, SSE_JOB_METADATA } from '../sse-job.options';
import { SseChatInterceptor } from './sse-chat.interceptor';

/**
 * An AI chat endpoint for the AI SDK's `useChat` (`DefaultChatTransport`, `resume: true`): a turn
 * is a resumable job (`@SseJob()`) keyed by the chat the client names, spoken in the AI SDK's UI
 * message stream. Three routes:
 *
 * - `POST <path>` starts a turn: the handler gets the request body (`{ id, messages, … }`) and
 *   the turn's `@SseJobSignal()`, and returns UI message chunks (`result.toUIMessageStream()`,
 *   or any Observable / async iterable of chunks), or {@link sseChatTurn}(chunks, { onFinish }).
 *   A turn started while the chat's last one runs supersedes it (that one ends cancelled).
 * - `GET <path>/<chatId>/stream` resumes the chat's running turn on any instance, from its
 *   first chunk (or from `Last-Event-ID`); `204` when none runs.
 * - `DELETE <path>/<chatId>/stream` stops it (`202`), from any instance: the model call's
 *   signal fires; `204` when none runs.
 *
 * Turns are the principal's (`SSE_JOB_OWNER_RESOLVER`): another principal's chat id is a chat
 * of its own. Guards on the class, or on the method below `@SseChat()`, guard all three.
 * See docs/ai-sdk.md.
 */
export function SseChat(path = ''): MethodDecorator {
  return (target: object, key: string | symbol, descriptor: PropertyDescriptor) => {
    if (typeof descriptor.value !== 'function') {
      throw new TypeError(`@SseChat() can only decorate methods (${String(key)})`);
    }
    wrapWithHiddenArgument(target, key, descriptor, Res(), (_response, call) =>
      SseHandlerResult.of(call),
    );
    applyDecorators(
      Post(path),
      SetMetadata(SSE_JOB_METADATA, 'chat'),
      UseInterceptors(SseChatInterceptor),
    )(target, key, descriptor);
    const streamPath = `${path.replace(/\/+$/, '')}/:${CHAT_ID_PARAM}/stream`.replace(/^\/?/, '');
    const role = (name: string, mapping: MethodDecorator) =>
      addCompanionRoute(target, key, name, mapping, SSE_JOB_METADATA, SseChatInterceptor);
    role('chat-resume', Get(streamPath));
    role('chat-stop', Delete(streamPath));
    return descriptor;
  };
}
