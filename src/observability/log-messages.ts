/**
 * Every line the module logs, by stable id: what it means and at which level it is written.
 * The id leads the line (`[outbox.read-failed] Outbox read failed (will retry): …`), so alerts and
 * log queries can match it whatever the wording becomes. docs/observability.md lists them all (a
 * test keeps the two equal).
 */
export const SSE_LOG_MESSAGES = {
  'outbox.ready': { level: 'log', meaning: 'the outbox schema was created or checked at start' },
  'outbox.read-failed': {
    level: 'warn',
    meaning: 'the relay could not read the outbox table; it retries',
  },
  'outbox.listen-lost': {
    level: 'warn',
    meaning: 'the LISTEN connection was lost; it reconnects with backoff (polling covers the gap)',
  },
  'outbox.held-back': {
    level: 'warn',
    meaning:
      'committed events wait behind a transaction open elsewhere (the line names its backend pid and application)',
  },
  'outbox.held-back-ended': {
    level: 'log',
    meaning: 'no committed event is held back any more',
  },
  'outbox.wakeup-failed': {
    level: 'warn',
    meaning:
      'a wake-up after commit (NOTIFY, or the check of a transaction published into) failed; the poll delivers meanwhile',
  },
  'outbox.notify-trigger-dropped': {
    level: 'log',
    meaning:
      "the migration dropped the NOTIFY trigger of an earlier version (`outbox.wakeup: 'after-commit'`): relays are woken after commits from now on",
  },
  'outbox.notify-trigger': {
    level: 'warn',
    meaning:
      'the outbox table still has the NOTIFY trigger while `outbox.wakeup` is `after-commit` (a table migrated by the team): commits that publish run one at a time until it is dropped',
  },
  'outbox.replay-failed': {
    level: 'warn',
    meaning: 'a resume could not be read; the client was sent `reset` (`replay-failed`)',
  },
  'outbox.retention-failed': {
    level: 'warn',
    meaning: 'retention could not delete old events; it runs again at its next interval',
  },
  'postgres.idle-error': {
    level: 'warn',
    meaning: 'an idle pooled PostgreSQL connection failed (it is discarded)',
  },
  'postgres.connection-lost': {
    level: 'warn',
    meaning:
      'a PostgreSQL connection in use was lost (its query fails, the connection is discarded)',
  },
  'postgres.close-timeout': {
    level: 'warn',
    meaning: 'PostgreSQL connections did not close in time at shutdown; they were destroyed',
  },
  'fanout.leading': {
    level: 'log',
    meaning: 'this instance now appends the outbox to the Redis Stream (`fanout: redis`)',
  },
  'fanout.lead-lost': { level: 'warn', meaning: 'this instance lost the relay lead' },
  'fanout.lock-failed': {
    level: 'warn',
    meaning: 'the relay lock session failed; the candidacy retries',
  },
  'fanout.append-failed': {
    level: 'warn',
    meaning: 'appending to the Redis Stream failed; the leader retries',
  },
  'fanout.gap-read-failed': {
    level: 'warn',
    meaning: 'events missing from the Redis Stream could not be read from the table; retried',
  },
  'fanout.stream-unavailable': {
    level: 'warn',
    meaning: 'the Redis Stream cannot be read; the relay follows the outbox table until it can',
  },
  'fanout.stream-still-unavailable': {
    level: 'warn',
    meaning: 'the Redis Stream still cannot be read (repeats while it lasts)',
  },
  'fanout.stream-back': { level: 'log', meaning: 'the relay follows the Redis Stream again' },
  'sse.nest-sse-route': {
    level: 'warn',
    meaning:
      "a route uses `@Sse` from `@nestjs/common`, not this package's: it gets no heartbeats, limits, resume or shutdown handling (the line names the route)",
  },
  'sse.slow-consumer': {
    level: 'warn',
    meaning: 'a client was disconnected: over `sse.maxBufferedBytes` for `sse.slowConsumerMs`',
  },
  'sse.unframeable-event': {
    level: 'error',
    meaning: 'a handler emitted an event that cannot be framed (dropped)',
  },
  'sse.source-failed': {
    level: 'error',
    meaning: "a stream handler's source failed (the stream ends)",
  },
  'job.follow-failed': {
    level: 'warn',
    meaning: "a job's log could not be followed from this instance (the stream closes)",
  },
  'job.unframeable-event': {
    level: 'error',
    meaning: 'a job emitted an event that cannot be framed (dropped)',
  },
  'job.log-failed': {
    level: 'error',
    meaning: "a job's log could not be written; the job ends `log-unavailable`",
  },
  'job.end-failed': { level: 'error', meaning: "a job's end could not be written to its log" },
  'job.failed': {
    level: 'error',
    meaning: "a job's handler failed with an error that is not an HttpException",
  },
  'job.finish-failed': {
    level: 'error',
    meaning: "an `@SseChat()` turn's `onFinish` threw or rejected (the line names the chat)",
  },
  'job.heartbeat-failed': {
    level: 'warn',
    meaning: "jobs' alive keys could not be refreshed in Redis",
  },
  'redis.error': { level: 'warn', meaning: 'the Redis connection reported an error' },
  'redis.unreachable': {
    level: 'warn',
    meaning: 'Redis was not reachable at start; idempotent requests follow `idempotency.failMode`',
  },
  'idempotency.lease-lost': {
    level: 'warn',
    meaning: "a request's idempotency lease could not be renewed: another request may run",
  },
  'idempotency.memory-store': {
    level: 'warn',
    meaning:
      '`@Idempotent()` routes keep records in process memory (no `redis` option, outside production): replicas do not share them',
  },
  'idempotency.bypass': {
    level: 'warn',
    meaning: 'the store failed and `failMode: open` ran the request without idempotency',
  },
  'idempotency.store-unavailable': {
    level: 'error',
    meaning: 'the store failed; the request was answered 503',
  },
  'idempotency.record-failed': {
    level: 'error',
    meaning: "a response could not be stored; a retry runs the handler's effects again",
  },
  'idempotency.lease-expired': {
    level: 'warn',
    meaning: 'a response was not stored: its lease had expired (the handler ran too long)',
  },
  'idempotency.release-failed': {
    level: 'error',
    meaning: 'a failed request could not release its key; it expires with its lease',
  },
  'idempotency.route': {
    level: 'warn',
    meaning: 'an `@Idempotent()` route is set up in a way that weakens it (once per route)',
  },
  'metrics.lag-unmeasured': {
    level: 'warn',
    meaning: 'a metrics scrape could not measure the outbox lag in time',
  },
  'shutdown.draining': {
    level: 'log',
    meaning: 'shutdown began: readiness is 503 while streams drain',
  },
  'shutdown.grace-exceeded': {
    level: 'warn',
    meaning: 'requests were still open after `shutdown.graceMs`; their connections were closed',
  },
} as const satisfies Record<string, { level: 'log' | 'warn' | 'error'; meaning: string }>;

export type SseLogMessageId = keyof typeof SSE_LOG_MESSAGES;
