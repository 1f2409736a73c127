/**
 * The transactions of the libraries teams already use, seen the way the outbox needs them: a way
 * to run parameterized SQL on an open transaction, and a way to begin one. Recognized by shape,
 * so this package imports none of them (Drizzle's `sql` builder is loaded only when a Drizzle
 * transaction is used).
 *
 * The SQL handed to `query()` is this package's own (`$1`, `$2`… placeholders, no `?`).
 */
import type { PoolClient } from 'pg';

/** Anything that runs a parameterized query on the caller's open transaction: a `pg` client, or your own adapter. */
export interface OutboxQueryable {
  query(text: string, values: unknown[]): Promise<{ rows: any[] }>;
}

/** A transaction as the outbox sees it. */
export interface OrmTransaction {
  /** The library, for error messages. */
  readonly library: string;
  /**
   * `open`: already inside a transaction (a pg client after BEGIN, a QueryRunner, a Knex `trx`…).
   * `starter`: can begin one (a DataSource, a Kysely or Drizzle database, a pg Pool…).
   */
  readonly kind: 'open' | 'starter';
  /** Runs SQL on the open transaction (`open` only). */
  queryable(): OutboxQueryable;
  /**
   * Begins a transaction through the library (`starter` only) and runs `fn` in it: committed when
   * `fn` resolves, rolled back when it throws. `fn` gets the library's own transaction object.
   */
  begin<T>(fn: (tx: any) => Promise<T>): Promise<T>;
}

/**
 * What `outbox.transaction(source, fn)` hands `fn`: the library's own transaction object for a
 * source that begins one (TypeORM `DataSource`/`EntityManager` → `EntityManager`, Kysely →
 * `Transaction`, Knex → `Knex.Transaction`, Drizzle → its `tx`, MikroORM → `EntityManager`,
 * a pg `Pool` → `PoolClient`, `@nestjs-cls/transactional`'s `TransactionHost` → its `tx`), and the
 * source itself when it is already an open transaction.
 */
export type TransactionOf<S> = S extends {
  withTransaction(...args: any[]): any;
  readonly tx: infer X;
}
  ? X // @nestjs-cls/transactional TransactionHost
  : S extends { totalCount: number; connect(...args: any[]): any }
    ? PoolClient // pg Pool
    : S extends { getRepository: any; transaction(i: any, cb: (m: infer M) => Promise<any>): any }
      ? M // TypeORM DataSource / EntityManager (the last overload takes the isolation level first)
      : S extends { transactional(cb: (em: infer E) => any, ...rest: any[]): any }
        ? E // MikroORM
        : S extends { transaction(): { execute(cb: (trx: infer X) => any): any } }
          ? X // Kysely
          : S extends { transaction(cb: (tx: infer X) => Promise<any>, config?: any): any }
            ? X // Drizzle, Knex
            : S; // an open transaction: itself

type Anything = Record<string, any>;
const isFn = (value: unknown): value is (...args: any[]) => any => typeof value === 'function';

/** Recognizes `source`, or throws a TypeError that says what is accepted. */
export function ormTransaction(source: unknown): OrmTransaction {
  const x = source as any;
  if (x === null || (typeof x !== 'object' && typeof x !== 'function')) throw unsupported(source);

  // @nestjs-cls/transactional: the TransactionHost (publish without passing the transaction).
  if (isFn(x.withTransaction) && isFn(x.isTransactionActive)) {
    return x.isTransactionActive()
      ? open('@nestjs-cls/transactional', () => ormTransaction(x.tx).queryable())
      : starter('@nestjs-cls/transactional', (fn) => x.withTransaction(() => fn(x.tx)));
  }
  // Knex: the instance and its transactions are functions.
  if (typeof x === 'function' && isFn(x.raw) && isFn(x.transaction)) {
    return x.isTransaction === true
      ? open('Knex', () => knexQueryable(x))
      : starter('Knex', (fn) => x.transaction(fn));
  }
  // Kysely (also MikroORM 7's transaction context).
  if (isFn(x.executeQuery) && isFn(x.selectFrom)) {
    return x.isTransaction === true
      ? open('Kysely', () => kyselyQueryable(x))
      : starter('Kysely', (fn) => x.transaction().execute(fn));
  }
  // MikroORM: its transaction context is a Kysely (v7) or Knex (v6) transaction.
  if (isFn(x.transactional) && isFn(x.getTransactionContext)) {
    return x.isInTransaction()
      ? open('MikroORM', () => ormTransaction(x.getTransactionContext()).queryable())
      : starter('MikroORM', (fn) => x.transactional(fn));
  }
  // TypeORM QueryRunner: its transaction is begun and ended by its owner.
  if (isFn(x.startTransaction) && isFn(x.commitTransaction) && 'isTransactionActive' in x) {
    return open('TypeORM QueryRunner', () => typeOrmQueryable(x));
  }
  // TypeORM EntityManager (inside a transaction when it carries its query runner) or DataSource.
  if (isFn(x.getRepository) && isFn(x.transaction)) {
    const runner = x.queryRunner as Anything | undefined;
    return runner?.isTransactionActive
      ? open('TypeORM', () => typeOrmQueryable(runner))
      : starter('TypeORM', (fn) => x.transaction(fn));
  }
  // Drizzle ORM: a transaction can roll itself back, the database cannot.
  if (isFn(x.execute) && isFn(x.transaction) && isFn(x.select)) {
    return isFn(x.rollback)
      ? open('Drizzle', () => drizzleQueryable(x))
      : starter('Drizzle', (fn) => x.transaction(fn));
  }
  // node-postgres Pool: a connection of its own, BEGIN … COMMIT.
  if (isFn(x.connect) && isFn(x.query) && typeof x.totalCount === 'number') {
    // Publishing on the Pool itself is a statement of its own: the event commits alone.
    return { ...starter('pg Pool', (fn) => pgPoolTransaction(x, fn)), queryable: () => x as any };
  }
  // A pg client in BEGIN, or any { query(text, values) → { rows } } of your own.
  if (isFn(x.query)) return open('pg', () => x as OutboxQueryable);
  throw unsupported(source);
}

function open(library: string, queryable: () => OutboxQueryable): OrmTransaction {
  return {
    library,
    kind: 'open',
    queryable,
    begin: () => Promise.reject(new Error(`${library}: already in a transaction`)),
  };
}

function starter(
  library: string,
  begin: (fn: (tx: any) => Promise<any>) => Promise<any>,
): OrmTransaction {
  return {
    library,
    kind: 'starter',
    queryable: () => {
      throw new TypeError(
        `outbox.publish() needs the transaction your data is written in, not a ${library} ` +
          'that begins one: pass the transaction object your callback received (publishing on ' +
          'another connection would commit the event on its own).',
      );
    },
    begin,
  };
}

function unsupported(source: unknown): TypeError {
  const what = source === null ? 'null' : typeof source;
  return new TypeError(
    `nestjs-durable-sse: cannot use ${what} as a transaction. Pass a pg client or Pool, a TypeORM ` +
      'DataSource/EntityManager/QueryRunner, a Kysely, Knex or Drizzle database or transaction, ' +
      "a MikroORM EntityManager, @nestjs-cls/transactional's TransactionHost, or any " +
      '{ query(text, values) → Promise<{ rows }> } running on your transaction (docs/outbox.md).',
  );
}

async function pgPoolTransaction<T>(pool: Anything, fn: (client: any) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      broken = rollbackError as Error;
    }
    throw error;
  } finally {
    client.release(broken);
  }
}

function typeOrmQueryable(runner: Anything): OutboxQueryable {
  return {
    async query(text, values) {
      if (!runner.isTransactionActive) {
        throw new TypeError(
          'TypeORM QueryRunner: start its transaction first (queryRunner.startTransaction()); ' +
            'outside one each statement would commit on its own.',
        );
      }
      // The structured result: `.records` for every command (the plain one is [rows, count] for UPDATE).
      const result = await runner.query(text, values, true);
      return { rows: result.records ?? [] };
    },
  };
}

/** Knex binds `?` in order: `$n` placeholders become `?` with their values in order of use. */
function knexQueryable(trx: Anything): OutboxQueryable {
  return {
    async query(text, values) {
      const bindings: unknown[] = [];
      const positional = text.replace(/\$(\d+)/g, (_, n: string) => {
        bindings.push(values[Number(n) - 1]);
        return '?';
      });
      const result = await trx.raw(positional, bindings);
      return { rows: result.rows ?? [] };
    },
  };
}

/**
 * Kysely runs a compiled query as given; this is `CompiledQuery.raw(text, values)` built without
 * importing Kysely. Without plugins, so a CamelCasePlugin does not rename the columns read here.
 */
function kyselyQueryable(trx: Anything): OutboxQueryable {
  const plain = isFn(trx.withoutPlugins) ? trx.withoutPlugins() : trx;
  return {
    async query(text, values) {
      const result = await plain.executeQuery({
        sql: text,
        parameters: values,
        query: { kind: 'RawNode', sqlFragments: [text], parameters: [] },
        queryId: { queryId: 'nestjs-durable-sse' },
      });
      return { rows: result.rows ?? [] };
    },
  };
}

/** Drizzle renders its own placeholders: the text is split at each `$n` around `sql.param(value)`. */
function drizzleQueryable(tx: Anything): OutboxQueryable {
  const { sql } = loadDrizzle();
  return {
    async query(text, values) {
      const chunks: unknown[] = [];
      let last = 0;
      for (const match of text.matchAll(/\$(\d+)/g)) {
        chunks.push(
          sql.raw(text.slice(last, match.index)),
          sql.param(values[Number(match[1]) - 1]),
        );
        last = match.index! + match[0].length;
      }
      chunks.push(sql.raw(text.slice(last)));
      const result = await tx.execute(sql.join(chunks));
      return { rows: result.rows ?? result ?? [] };
    },
  };
}

function loadDrizzle(): Anything {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('drizzle-orm');
  } catch (error) {
    throw new Error(
      `nestjs-durable-sse: a Drizzle transaction was given but 'drizzle-orm' cannot be loaded ` +
        `from here (${(error as Error).message})`,
    );
  }
}
