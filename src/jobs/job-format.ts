import type { SseHub } from '../sse/sse-hub';
import { toSseEvent } from '../sse/sse-event';
import type { JobEnd, LogEntry } from './job-log';
import { jobProblem, SseJobErrorReason } from './job-problem';

/**
 * How a job's events are framed on the wire and in its log. Every frame of a job is made here,
 * in one format per job: by its runner (events, its end), by a follower that finds the runner
 * gone (the Lua script gets the frame's tail) and for a client that cannot follow any more.
 */
export interface JobFormat {
  readonly name: 'sse' | 'ai-sdk';
  /** Headers of the job's streams, besides the event-stream ones. */
  readonly headers: Readonly<Record<string, string>>;
  /** Event `n`: what the handler emitted. Throws when it cannot be framed. */
  event(n: number, value: unknown, hub: SseHub): string;
  /** The job's last entry when it completed. */
  done(n: number): string;
  /** The job's last entry when it ended otherwise; with no id when `n` is undefined. */
  error(reason: SseJobErrorReason, n?: number, title?: string, status?: number): string;
}

const idLine = (n: number | undefined) => (n === undefined ? '' : `id: ${n}\n`);

/** `@SseJob()`: `id:`-numbered events, `event: done`, `event: error` with a problem body. */
export const SSE_JOB_FORMAT: JobFormat = {
  name: 'sse',
  headers: {},
  event(n, value, hub) {
    const event = toSseEvent(value);
    return hub.encode({ id: String(n), type: event.type, retry: event.retry, data: event.data });
  },
  done: (n) => `id: ${n}\nevent: done\ndata: {}\n\n`,
  error: (reason, n, title, status) =>
    `${idLine(n)}event: error\ndata: ${JSON.stringify(jobProblem(reason, title, status))}\n\n`,
};

/**
 * The AI SDK's UI message stream (`x-vercel-ai-ui-message-stream: v1`): each chunk one `data:`
 * line of JSON (numbered with `id:` so a stream resumes by `Last-Event-ID` too), `data: [DONE]`
 * at the end. A cancel ends with the protocol's `abort` chunk, any other failure with its
 * `error` chunk carrying the problem's title only (never the error's message or stack). Events
 * of other names, comments and `retry:` are ignored by its parser; nothing else is sent.
 */
export const AI_SDK_JOB_FORMAT: JobFormat = {
  name: 'ai-sdk',
  headers: { 'x-vercel-ai-ui-message-stream': 'v1', 'x-accel-buffering': 'no' },
  event(n, value) {
    if (
      typeof value !== 'object' ||
      value === null ||
      typeof (value as { type?: unknown }).type !== 'string'
    ) {
      throw new TypeError('a UI message chunk is an object with a string `type`');
    }
    return `id: ${n}\ndata: ${JSON.stringify(value)}\n\n`;
  },
  done: (n) => `id: ${n}\ndata: [DONE]\n\n`,
  error(reason, n, title, status) {
    const chunk =
      reason === 'cancelled'
        ? { type: 'abort' }
        : { type: 'error', errorText: String(jobProblem(reason, title, status).title) };
    return `${idLine(n)}data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`;
  },
};

export const JOB_FORMATS = { sse: SSE_JOB_FORMAT, 'ai-sdk': AI_SDK_JOB_FORMAT } as const;

/**
 * A job's last log entry. An end other than a cancel carries the cancelled end too: the log
 * writes that one instead when a cancel was accepted before the end arrived (job-log.ts,
 * END_SCRIPT), so a `202` for a cancel always holds.
 */
export function endEntry(
  n: number,
  end: JobEnd,
  frame: string,
  format: JobFormat,
  reason?: SseJobErrorReason,
): LogEntry {
  const entry: LogEntry = { n, frame, end };
  if (reason !== 'cancelled') entry.cancelledFrame = format.error('cancelled', n);
  return entry;
}
