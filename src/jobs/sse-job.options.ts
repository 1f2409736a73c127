/** Options of `@SseJob(path, options)`. */
export interface SseJobRouteOptions {
  /** The HTTP method that starts the job. Default `POST`. */
  method?: 'POST' | 'PUT' | 'PATCH' | 'GET';
}

export const SSE_JOB_METADATA = 'nestjs-durable-sse:job';
/** Route parameter of the resume and cancel URLs. */
export const JOB_ID_PARAM = 'sseJobId';

export type SseJobRole = 'start' | 'resume' | 'cancel' | 'chat' | 'chat-resume' | 'chat-stop';

/** What the handler's `@SseJobSignal()` is read from: set on the request before the handler runs. */
const JOB_ABORT = Symbol('nestjs-durable-sse:job-abort');

/** The AbortController of the job a request starts (created on first use). */
export function jobAbortController(request: Record<symbol, unknown>): AbortController {
  return ((request[JOB_ABORT] as AbortController | undefined) ??= new AbortController());
}
/** Route parameter of a chat's stream URL (`@SseChat()`). */
export const CHAT_ID_PARAM = 'sseChatId';
