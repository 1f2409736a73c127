/**
 * `nestjs-durable-sse/pglite`: the outbox on an embedded PostgreSQL (PGlite), for demos, tests
 * and single-process tools (docs/embedded.md). `@electric-sql/pglite` is an optional peer
 * dependency: nothing here loads it unless {@link openPglite} is called.
 */
import type { PgliteLike, PglitePostgresOptions } from './outbox/embedded/pglite-postgres';
import { pglitePostgres } from './outbox/embedded/pglite-postgres';

export { pglitePostgres };
export type { PgliteLike, PglitePostgresOptions };

/** A PGlite database and the `postgres` options that run the outbox on it. */
export interface OpenedPglite {
  /** The PGlite instance: close it (`await db.close()`) after the Nest app has closed. */
  db: PgliteLike & { close(): Promise<void> };
  /** Spread into `SseModule.forRoot({ postgres: { ...postgres, schema } })`. */
  postgres: PglitePostgresOptions;
}

/**
 * Creates a PGlite database (in memory, or persisted in `dataDir`) and adapts it. Throws an
 * error saying what to install when `@electric-sql/pglite` is missing.
 */
export async function openPglite(dataDir?: string): Promise<OpenedPglite> {
  let PGlite: { create(dataDir?: string): Promise<OpenedPglite['db']> };
  try {
    // Optional peer dependency: loaded only here, when asked for.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    ({ PGlite } = require('@electric-sql/pglite'));
  } catch (error) {
    if ((error as { code?: string }).code !== 'MODULE_NOT_FOUND') throw error;
    throw new Error(
      'nestjs-durable-sse/pglite: openPglite() needs @electric-sql/pglite, an optional peer ' +
        'dependency that is not installed. Run `npm install @electric-sql/pglite` (or pass your ' +
        'own instance to pglitePostgres(db)).',
    );
  }
  const db = await PGlite.create(dataDir);
  return { db, postgres: pglitePostgres(db) };
}
