import { EventEmitter } from 'node:events';
import type { Client, Pool } from 'pg';
import { Semaphore } from '../../common/semaphore';

/**
 * The part of `@electric-sql/pglite`'s `PGlite` this adapter uses. Structural, so the package
 * stays an optional peer: the module never imports it, the app passes its own instance.
 */
export interface PgliteLike {
  query(
    sql: string,
    params?: unknown[],
    options?: { parsers?: Record<number, (value: string, typeId?: number) => unknown> },
  ): Promise<PgliteResults>;
  exec(
    sql: string,
    options?: { parsers?: Record<number, (value: string, typeId?: number) => unknown> },
  ): Promise<PgliteResults[]>;
  onNotification(callback: (channel: string, payload: string) => void): () => void;
}

interface PgliteResults {
  rows: Record<string, unknown>[];
  affectedRows?: number;
  fields: { name: string; dataTypeID: number }[];
}

/** What {@link pglitePostgres} returns: spread it into `SseModule.forRoot({ postgres })`. */
export interface PglitePostgresOptions {
  existingPool: Pool;
  listenerClientFactory: () => Client;
}

type QueryConfig = { text: string; values?: unknown[] };
type QueryResult = {
  rows: Record<string, unknown>[];
  rowCount: number;
  fields: { name: string; dataTypeID: number }[];
};

const INT8 = 20;
const NUMERIC = 1700;
const asText = (value: string) => value;
// pg returns int8 and numeric as strings (they do not fit a JS number); so must this adapter,
// or ids would change type between the embedded and the production path.
const PG_COMPATIBLE_PARSERS = { [INT8]: asText, [NUMERIC]: asText };

/**
 * Runs the outbox on an embedded PostgreSQL (PGlite: real PostgreSQL compiled to WASM, in this
 * process) through the same `pg.Pool` / `pg.Client` surface the module uses in production:
 *
 * ```ts
 * const db = await PGlite.create('./.data/pglite');
 * SseModule.forRoot({ postgres: pglitePostgres(db) });
 * ```
 *
 * PGlite is one database session. The pool therefore hands out one client at a time (a
 * transaction holds the session; other queries wait for it), and the relay's LISTEN "connection"
 * shares that session and receives its notifications through `onNotification`. Meant for demos,
 * tests and single-process tools, not for production: one process, no concurrency, no failover.
 * The module never closes `db`; the app does, after the Nest app has closed.
 */
export function pglitePostgres(db: PgliteLike): PglitePostgresOptions {
  const session = new PgliteSession(db);
  return {
    existingPool: new PglitePool(session) as unknown as Pool,
    listenerClientFactory: () => new PgliteListenerClient(session) as unknown as Client,
  };
}

/** The single session: one holder at a time, first come first served. */
class PgliteSession {
  private readonly lock = new Semaphore(1);

  constructor(readonly db: PgliteLike) {}

  get held(): boolean {
    return this.lock.running > 0;
  }

  get waiting(): number {
    return this.lock.queued;
  }

  /** Holds the session until the returned function is called (a pool checkout). */
  acquire(): Promise<() => void> {
    return this.lock.acquire();
  }

  /** One statement, holding the session just for it. */
  exclusive(textOrConfig: string | QueryConfig, values?: unknown[]): Promise<QueryResult> {
    return this.lock.run(() => this.run(textOrConfig, values));
  }

  /** One statement as `pg` would run it, for a caller that already holds the session. */
  async run(textOrConfig: string | QueryConfig, values?: unknown[]): Promise<QueryResult> {
    const text = typeof textOrConfig === 'string' ? textOrConfig : textOrConfig.text;
    const params = typeof textOrConfig === 'string' ? values : (textOrConfig.values ?? values);
    const options = { parsers: PG_COMPATIBLE_PARSERS };
    // pg sends a query without values as a simple query, which may hold several statements
    // (migrations do); PGlite's exec is the same protocol and returns one result per statement.
    const result =
      params === undefined || params.length === 0
        ? ((await this.db.exec(text, options)).at(-1) ?? { rows: [], fields: [] })
        : await this.db.query(text, params, options);
    return {
      rows: result.rows,
      rowCount: result.affectedRows ?? result.rows.length,
      fields: result.fields,
    };
  }
}

/** `pg.PoolClient` over the session, held from `connect()` until `release()`. */
class PglitePoolClient {
  constructor(
    private readonly session: PgliteSession,
    readonly release: (error?: Error | boolean) => void,
  ) {}

  query(textOrConfig: string | QueryConfig, values?: unknown[]): Promise<QueryResult> {
    return this.session.run(textOrConfig, values);
  }
}

/** `pg.Pool` over the session: size one, never ends the database (the app owns it). */
class PglitePool extends EventEmitter {
  readonly options = { max: 1 };

  constructor(private readonly session: PgliteSession) {
    super();
  }

  get totalCount(): number {
    return 1;
  }

  get idleCount(): number {
    return this.session.held ? 0 : 1;
  }

  get waitingCount(): number {
    return this.session.waiting;
  }

  async connect(): Promise<PglitePoolClient> {
    return new PglitePoolClient(this.session, await this.session.acquire());
  }

  query(textOrConfig: string | QueryConfig, values?: unknown[]): Promise<QueryResult> {
    return this.session.exclusive(textOrConfig, values);
  }

  async end(): Promise<void> {}
}

const LISTEN = /^\s*LISTEN\s+(.+?)\s*;?\s*$/i;

/**
 * `pg.Client` for the relay's LISTEN: its statements run in the shared session, and every
 * notification that session receives is emitted as pg's `notification` event (the relay
 * filters by channel). `end()` unlistens only the channels this client listened to, since the
 * session may hold the app's own listeners.
 */
class PgliteListenerClient extends EventEmitter {
  private unsubscribe?: () => void;
  private readonly channels = new Set<string>();

  constructor(private readonly session: PgliteSession) {
    super();
  }

  async connect(): Promise<void> {
    this.unsubscribe = this.session.db.onNotification((channel, payload) =>
      this.emit('notification', { channel, payload, processId: 0 }),
    );
  }

  async query(textOrConfig: string | QueryConfig, values?: unknown[]): Promise<QueryResult> {
    const result = await this.session.exclusive(textOrConfig, values);
    const text = typeof textOrConfig === 'string' ? textOrConfig : textOrConfig.text;
    const listen = LISTEN.exec(text);
    if (listen) this.channels.add(listen[1]);
    return result;
  }

  async end(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const channels = [...this.channels];
    this.channels.clear();
    for (const channel of channels) {
      // The database may already be closed; nothing is left to unlisten then.
      await this.session.exclusive(`UNLISTEN ${channel}`).catch(() => undefined);
    }
    this.emit('end');
  }
}
