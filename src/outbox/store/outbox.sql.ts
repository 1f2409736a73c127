/**
 * The outbox's SQL, as named statements. Identifiers are validated (lower-case SQL identifiers)
 * before they reach these builders and are always double-quoted.
 *
 * Commit-safe reads: a row is read only once its transaction id is below the xmin of the
 * reader's snapshot, i.e. once every transaction that could still insert a row *before* it has
 * finished. Rows are ordered and positioned by (tx_id, id), so a transaction that took id 10 but
 * committed after the one that took id 11 is never skipped, and every reader sees one order.
 * The cost: a transaction left open anywhere in the cluster holds delivery back until it ends.
 */
export interface OutboxNames {
  schema: string;
  table: string;
  channel: string;
  /**
   * `trigger`: the table notifies inside every inserting transaction. Otherwise (the default) the
   * trigger is dropped and the module notifies after commits (outbox-wakeup.ts).
   */
  wakeup?: 'after-commit' | 'trigger';
}

const q = (identifier: string) => `"${identifier}"`;

/** Re-indents a multi-line statement: continuation lines by two spaces. */
const tidy = (statement: string) =>
  statement
    .split('\n')
    .map((line, i) => (i === 0 ? line.trim() : `  ${line.trim()}`))
    .join('\n')
    .replace(/\n {2}\)/g, '\n)');

export function outboxSql(names: OutboxNames) {
  const table = `${q(names.schema)}.${q(names.table)}`;
  const meta = `${q(names.schema)}.${q(`${names.table}_meta`)}`;
  const notifyFunction = `${q(names.schema)}.${q(`${names.table}_notify`)}`;
  const notifyTrigger = q(`${names.table}_notify`);
  // A catalog read: it takes no lock on the table (DROP TRIGGER IF EXISTS would), and finds
  // nothing (rather than failing) before the table exists.
  const hasNotifyTrigger = `SELECT 1 FROM pg_trigger
      WHERE tgrelid = to_regclass('${table.replace(/'/g, "''")}') AND tgname = '${names.table}_notify'`;
  const effects = `${q(names.schema)}.${q(`${names.table}_effects`)}`;
  // Output names differ from the columns: a bare ORDER BY tx_id would sort the text aliases.
  const columns = `o.tx_id::text AS tx_id, o.id::text AS id, o.topic, o.type, o.payload, o.trace_context`;
  // Rows of transactions that may still be running are left for a later read.
  const settled = `tx_id < pg_snapshot_xmin(pg_current_snapshot())`;

  return {
    /** Idempotent; safe to run on every start and from several instances at once. */
    migrate: (
      [
        `CREATE SCHEMA IF NOT EXISTS ${q(names.schema)}`,
        `CREATE TABLE IF NOT EXISTS ${table} (
        id bigint GENERATED ALWAYS AS IDENTITY,
        tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        topic text NOT NULL,
        type text,
        payload jsonb NOT NULL,
        dedupe_key text,
        created_at timestamptz NOT NULL DEFAULT now(),
        trace_context text,
        PRIMARY KEY (tx_id, id)
      )`,
        // trace_context (the publisher's trace context, the propagator's fields as key=value
        // lines) came after the first release: tables created before gain it here.
        `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS trace_context text`,
        `CREATE INDEX IF NOT EXISTS ${q(`${names.table}_topic_position`)} ON ${table} (topic, tx_id, id)`,
        `CREATE UNIQUE INDEX IF NOT EXISTS ${q(`${names.table}_dedupe`)} ON ${table} (topic, dedupe_key) WHERE dedupe_key IS NOT NULL`,
        // Highest position retention has deleted: a client that asks to resume from before it
        // has missed events for good and must reset.
        `CREATE TABLE IF NOT EXISTS ${meta} (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        deleted_through_tx xid8 NOT NULL DEFAULT '0',
        deleted_through_id bigint NOT NULL DEFAULT 0
      )`,
        `INSERT INTO ${meta} (singleton) VALUES (true) ON CONFLICT DO NOTHING`,
        ...(names.wakeup === 'trigger'
          ? [
              // One NOTIFY per transaction: PostgreSQL folds identical notifications of a
              // transaction into one. The payload is empty: it only wakes relays (and 8000
              // bytes would not do). The price: a transaction that notified takes a
              // database-wide lock at commit and holds it through its WAL flush, so such
              // commits run one at a time.
              `CREATE OR REPLACE FUNCTION ${notifyFunction}() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         PERFORM pg_notify('${names.channel}', '');
         RETURN NULL;
       END $$`,
              `CREATE OR REPLACE TRIGGER ${notifyTrigger} AFTER INSERT ON ${table}
         FOR EACH STATEMENT EXECUTE FUNCTION ${notifyFunction}()`,
            ]
          : [
              // Wake-ups are sent by the module after commits, outside every transaction: the
              // trigger of earlier versions (or of wakeup: 'trigger') would serialize commits.
              // Dropped only when it is there: DROP TRIGGER locks the table against everything,
              // readers too, even when there is nothing to drop.
              `DO $$ BEGIN
         IF EXISTS (${hasNotifyTrigger}) THEN
           DROP TRIGGER ${notifyTrigger} ON ${table};
         END IF;
       END $$`,
            ]),
        // The results of outbox.transaction() inside @Idempotent() requests, committed with their
        // effects: what a retry returns when Redis no longer knows the request (seq: the n-th
        // transaction of the request). Text, not jsonb: jsonb reorders keys, and the retry must
        // see the very same value for the handler to answer byte for byte as the first time.
        `CREATE TABLE IF NOT EXISTS ${effects} (
        scope text NOT NULL,
        key text NOT NULL,
        seq integer NOT NULL,
        fingerprint text NOT NULL,
        result text NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (scope, key, seq)
      )`,
      ] as const
    ).map(tidy),

    /**
     * $1 topics text[], $2 types text[], $3 payloads (JSON text)[], $4 dedupe keys text[], $5 the
     * trace context of them all (or null).
     */
    insert: `INSERT INTO ${table} (topic, type, payload, dedupe_key, trace_context)
      SELECT topic, type, payload::jsonb, dedupe_key, $5::text
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS e(topic, type, payload, dedupe_key)
      ON CONFLICT (topic, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
      RETURNING tx_id::text AS tx_id, id::text AS id`,

    /** The relay's next batch after $1/$2 (tx_id, id), at most $3 rows. */
    readAfter: `SELECT ${columns} FROM ${table} o
      WHERE (o.tx_id, o.id) > ($1::xid8, $2::bigint) AND o.${settled}
      ORDER BY o.tx_id, o.id LIMIT $3`,

    /**
     * As readAfter, on rows that also say whether committed events are held back (by an older
     * transaction still open, anywhere): nothing wakes the reader when that transaction ends, so
     * it reads again soon. An empty batch is one row of nulls saying only that. (A bare
     * tx_id bound: with the row comparison beside it, the index scan starts at the position and
     * walks every settled row after it.)
     */
    readNext: `SELECT h.held_back, b.tx_id, b.id, b.topic, b.type, b.payload, b.trace_context
      FROM (SELECT EXISTS (SELECT 1 FROM ${table} o
        WHERE o.tx_id >= greatest($1::xid8, pg_snapshot_xmin(pg_current_snapshot()))) AS held_back) h
      LEFT JOIN LATERAL (SELECT ${columns}, o.tx_id AS sort_tx, o.id AS sort_id FROM ${table} o
        WHERE (o.tx_id, o.id) > ($1::xid8, $2::bigint) AND o.${settled}
        ORDER BY o.tx_id, o.id LIMIT $3) b ON true
      ORDER BY b.sort_tx, b.sort_id`,

    /**
     * Settled events after ($1, $2) up to and including ($3, $4), at most $5 rows: what a stream
     * follower missed between two entries of the Redis Stream (a restart, a trim, a flush).
     */
    readRange: `SELECT ${columns} FROM ${table} o
      WHERE (o.tx_id, o.id) > ($1::xid8, $2::bigint)
        AND (o.tx_id, o.id) <= ($3::xid8, $4::bigint) AND o.${settled}
      ORDER BY o.tx_id, o.id LIMIT $5`,

    /** Where a new relay starts: everything of transactions that already ended is history. */
    startPosition: `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS tx_id, '0' AS id`,

    /**
     * Events of topics $1 after ($2, $3) up to and including ($4, $5), at most $6 rows. The upper
     * bound is the relay's position, so replay and live delivery meet without gap or overlap.
     */
    replay: `SELECT ${columns} FROM ${table} o
      WHERE o.topic = ANY($1::text[])
        AND (o.tx_id, o.id) > ($2::xid8, $3::bigint)
        AND (o.tx_id, o.id) <= ($4::xid8, $5::bigint)
      ORDER BY o.tx_id, o.id LIMIT $6`,

    /** Retention watermark: resuming from at or before it is impossible. */
    deletedThrough: `SELECT deleted_through_tx::text AS tx_id, deleted_through_id::text AS id FROM ${meta}`,

    /**
     * Deletes the oldest settled events created before $1, at most $2, in position order and
     * only as a prefix (an old event behind a younger one waits), and advances the watermark.
     */
    retention: `WITH candidates AS (
        SELECT tx_id, id, created_at < $1 AS expired FROM ${table}
        WHERE ${settled} ORDER BY tx_id, id LIMIT $2
      ), deletable AS (
        SELECT c.tx_id, c.id FROM candidates c
        WHERE c.expired AND NOT EXISTS (
          SELECT 1 FROM candidates k WHERE NOT k.expired AND (k.tx_id, k.id) < (c.tx_id, c.id))
      ), deleted AS (
        DELETE FROM ${table} t USING deletable d
        WHERE (t.tx_id, t.id) = (d.tx_id, d.id)
        RETURNING t.tx_id, t.id
      ), last AS (
        SELECT tx_id, id FROM deleted ORDER BY tx_id DESC, id DESC LIMIT 1
      ), watermark AS (
        UPDATE ${meta} m SET deleted_through_tx = last.tx_id, deleted_through_id = last.id
        FROM last WHERE (m.deleted_through_tx, m.deleted_through_id) < (last.tx_id, last.id)
      )
      SELECT count(*)::int AS deleted FROM deleted`,

    /** Serializes concurrent migrations of several instances. */
    migrationLock: `SELECT pg_advisory_xact_lock(hashtext($1))`,

    /** Whether an event exists at ($1, $2): tells a client ahead of this relay from a bogus id. */
    exists: `SELECT 1 FROM ${table} WHERE (tx_id, id) = ($1::xid8, $2::bigint)`,
    /**
     * A page's position: the snapshot its state was read in. The isolation level is asked too:
     * under READ COMMITTED each statement has a snapshot of its own, so this one would not be
     * the state's.
     */
    snapshot: `SELECT pg_current_snapshot()::text AS snapshot,
        current_setting('transaction_isolation') AS isolation,
        pg_current_xact_id_if_assigned()::text AS own_tx`,
    /** Where transaction ids have reached: a snapshot position past it names none yet. */
    snapshotXmax: `SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`,

    /** Liveness of the LISTEN connection: it must still be listening on the channel. */
    listening: `SELECT 1 FROM pg_listening_channels() AS c WHERE c = $1`,

    /**
     * How far the relay at ($1, $2) is behind: `behind`, settled events it has not read yet
     * (counted up to $3); `pending`, committed events not yet deliverable because a transaction
     * that started before they committed is still open somewhere (counted up to $3), and the age
     * of the oldest of them; and how full the server's NOTIFY queue is (0 … 1).
     */
    lag: `SELECT (SELECT count(*) FROM (SELECT 1 FROM ${table} o
        WHERE (o.tx_id, o.id) > ($1::xid8, $2::bigint) AND o.${settled} LIMIT $3) waiting)::int AS behind,
      held.pending, held.oldest_pending_ms,
      pg_notification_queue_usage() AS queue_usage
      FROM (SELECT count(*)::int AS pending,
          floor(extract(epoch FROM clock_timestamp() - min(h.created_at)) * 1000)::float8 AS oldest_pending_ms
        FROM (SELECT o.created_at FROM ${table} o
          WHERE o.tx_id >= pg_snapshot_xmin(pg_current_snapshot()) LIMIT $3) h) held`,

    /**
     * The transaction holding delivery back: the oldest one with a transaction id, whose id is
     * the snapshot xmin every relay waits behind (a prepared transaction shows in
     * pg_prepared_xacts instead).
     */
    oldestTransaction: `SELECT pid, application_name, state,
        floor(extract(epoch FROM clock_timestamp() - xact_start) * 1000)::float8 AS age_ms
      FROM pg_stat_activity
      WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
      ORDER BY age(backend_xid) DESC LIMIT 1`,

    listen: `LISTEN ${q(names.channel)}`,

    /** Whether the table still has the NOTIFY trigger (of wakeup: 'trigger', or an earlier version). */
    hasNotifyTrigger,

    /**
     * The outcome recorded for ($1, $2, $3) — scope, key, n-th transaction of the request — and
     * whether it has expired (a new execution may then run). Read before the transaction's work;
     * no lock: the record is written at commit (effectsRecord).
     */
    effectsFind: `SELECT fingerprint, result, expires_at <= now() AS expired FROM ${effects}
      WHERE scope = $1 AND key = $2 AND seq = $3`,

    /**
     * Removes ($1, $2, $3)'s expired outcome in the transaction that is about to record a new one.
     * Its row lock makes a concurrent execution that found the row too wait, then delete nothing
     * and meet this one's record at commit.
     */
    effectsForget: `DELETE FROM ${effects}
      WHERE scope = $1 AND key = $2 AND seq = $3 AND expires_at <= now()`,

    /**
     * The one write of the record, just before COMMIT: fingerprint $4, result $5 (JSON text,
     * `{"v": …}`), kept $6 ms from now — the commit, not the transaction's start, so however long
     * the transaction ran, a retry cannot claim over it. A record committed meanwhile by a
     * concurrent execution of the same request fails it (unique violation, after waiting for that
     * one to end): this transaction must not commit.
     */
    effectsRecord: `INSERT INTO ${effects} (scope, key, seq, fingerprint, result, expires_at)
      VALUES ($1, $2, $3, $4, $5, clock_timestamp() + make_interval(secs => $6::float8 / 1000))`,

    /** effectsRecord, for statements sent one by one: no row when the record was already taken. */
    effectsRecordUnlessTaken: `INSERT INTO ${effects} (scope, key, seq, fingerprint, result, expires_at)
      VALUES ($1, $2, $3, $4, $5, clock_timestamp() + make_interval(secs => $6::float8 / 1000))
      ON CONFLICT (scope, key, seq) DO NOTHING RETURNING 1`,

    /** Deletes up to $1 expired results (retention). */
    effectsRetention: `WITH gone AS (DELETE FROM ${effects} WHERE ctid IN (
        SELECT ctid FROM ${effects} WHERE expires_at <= now() LIMIT $1) RETURNING 1)
      SELECT count(*)::int AS deleted FROM gone`,

    /**
     * `fanout: 'redis'`: the relay leader's lock, held by a dedicated session for as long as it
     * leads. Waiting is bounded by the session's lock_timeout, then tried again.
     */
    leaderLock: `SELECT pg_advisory_lock(hashtext($1))`,
  };
}

export type OutboxSql = ReturnType<typeof outboxSql>;

/** The wake-ups after commit (outbox-wakeup.ts): statements that name no table. */
export const WAKEUP_SQL = {
  /**
   * Sent after commits, in a transaction of its own ($1: the channel, $2: the sending instance,
   * whose own relay was woken already and ignores it).
   */
  notify: `SELECT pg_notify($1, $2)`,
  /**
   * $1 transaction ids (text[]): each one's status, `committed`, `aborted`, `in progress`, or
   * null when it is too old for the server to know (it ended long ago). An id the server has
   * not reached (after a failover to a server that is behind) fails the query (22023).
   */
  xactStatus: `SELECT x AS tx_id, pg_xact_status(x::xid8) AS status FROM unnest($1::text[]) AS x`,
};

/** What to do when a table migrated by the team predates the trace_context column. */
export const TRACE_CONTEXT_HINT =
  "The outbox stores each event's trace context in a column tables made by earlier versions " +
  'lack: apply the ALTER TABLE … ADD COLUMN trace_context of docs/outbox-schema.sql (or let the ' +
  'module migrate).';

/** `error`'s message, with the fix when it comes from a table without trace_context. */
export function explainSchemaError(error: Error): string {
  return (error as { code?: string }).code === '42703' && /trace_context/.test(error.message)
    ? `${error.message}. ${TRACE_CONTEXT_HINT}`
    : error.message;
}

/** The schema as one SQL script, for teams that run their own migrations (docs/outbox-schema.sql). */
export function outboxSchemaScript(names: OutboxNames): string {
  return [
    '-- nestjs-durable-sse outbox schema (PostgreSQL 14+).',
    '-- Generated from src/outbox/store/outbox.sql.ts; a test keeps docs/outbox-schema.sql equal to it.',
    `-- Names: schema ${names.schema}, table ${names.table}, channel ${names.channel}; wakeup ${names.wakeup ?? 'after-commit'}.`,
    '',
    outboxSql(names).migrate.join(';\n\n') + ';',
    '',
  ].join('\n');
}
