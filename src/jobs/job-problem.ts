/** Why a job ended with `event: error`; the `type` of its problem body is `urn:nestjs-durable-sse:job:<reason>`. */
export type SseJobErrorReason =
  'failed' | 'timeout' | 'cancelled' | 'shutdown' | 'too-large' | 'abandoned' | 'log-unavailable';

const PROBLEMS: Record<SseJobErrorReason, [number, string]> = {
  failed: [500, 'Internal Server Error'],
  timeout: [504, 'The job ran past jobs.timeoutMs'],
  cancelled: [409, 'The job was cancelled'],
  shutdown: [503, 'The instance running the job shut down before it finished'],
  'too-large': [413, "The job's events exceeded its log's bounds"],
  abandoned: [503, 'The instance running the job stopped before it finished'],
  'log-unavailable': [503, "The job's log could not be written"],
};

export function jobProblem(
  reason: SseJobErrorReason,
  title?: string,
  status?: number,
): Record<string, unknown> {
  const [defaultStatus, defaultTitle] = PROBLEMS[reason];
  return {
    type: `urn:nestjs-durable-sse:job:${reason}`,
    title: title ?? defaultTitle,
    status: status ?? defaultStatus,
  };
}
