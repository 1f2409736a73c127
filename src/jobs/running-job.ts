import type { Subscription } from 'rxjs';
import type { SseConnection } from '../sse/sse-connection';
import type { JobFormat } from './job-format';
import type { JobEnd, LogEntry } from './job-log';
import type { SseJobErrorReason } from './job-problem';

export type JobAdmission =
  { admitted: true; release(): void } | { admitted: false; status: 503 | 429; reason: string };

/** One job running on this instance. */
export interface RunningJob {
  id: string;
  clientKey: string;
  format: JobFormat;
  /** Called once when the job ends here, before its end is logged (a chat turn's onFinish). */
  onEnd?: (end: JobEnd, reason?: SseJobErrorReason) => void;
  /** Every event so far, framed (the log, in memory while the job runs here). */
  entries: LogEntry[];
  /**
   * Entries written to streams so far: those in the log. An event reaches a stream only once it
   * is in the log, so every id a client has seen can be resumed from, anywhere.
   */
  delivered: number;
  bytes: number;
  subscribers: Set<SseConnection>;
  abort: AbortController;
  subscription?: Subscription;
  timer?: NodeJS.Timeout;
  ended?: JobEnd;
  /** Entries not yet in Redis, and whether a write is under way. */
  pending: LogEntry[];
  writing: boolean;
  logBroken: boolean;
  /** Resolves once the job has ended and its log is written (or could not be). */
  settled: Promise<void>;
  settle: () => void;
  release: () => void;
}

/** A job about to run here: nothing emitted, nothing logged, its settlement pending. */
export function runningJob(
  id: string,
  clientKey: string,
  abort: AbortController,
  release: () => void,
  format: JobFormat,
): RunningJob {
  let settle!: () => void;
  const settled = new Promise<void>((resolve) => (settle = resolve));
  return {
    id,
    clientKey,
    format,
    entries: [],
    delivered: 0,
    bytes: 0,
    subscribers: new Set(),
    abort,
    pending: [],
    writing: false,
    logBroken: false,
    settled,
    settle,
    release,
  };
}
