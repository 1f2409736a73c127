import { Redis } from 'ioredis';
import { Client } from 'pg';

/**
 * Where the example keeps its data. `npm start` must work on a laptop with nothing installed,
 * and use the real servers when they are there:
 * - `DATABASE_URL` / `REDIS_URL` set: use them (and fail loudly if they do not answer: a
 *   variable someone set is a decision, not a hint);
 * - else the default local server, if it answers within a second;
 * - else embedded PostgreSQL (PGlite) and the in-memory idempotency store.
 * `ORDERS_EMBEDDED=1` chooses the embedded pair whatever is running.
 */
export interface Backends {
  postgres: { kind: 'server'; url: string } | { kind: 'embedded'; dataDir?: string };
  redis: { kind: 'server'; url: string } | { kind: 'memory' };
  /** One line for the log: what was chosen and why. */
  summary: string;
}

export interface BackendProbe {
  env?: NodeJS.ProcessEnv;
  defaultPostgresUrl?: string;
  defaultRedisUrl?: string;
  /** PGlite data directory for the embedded mode (default: in memory). */
  embeddedDataDir?: string;
  timeoutMs?: number;
}

export const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export async function resolveBackends(probe: BackendProbe = {}): Promise<Backends> {
  const env = probe.env ?? process.env;
  const timeoutMs = probe.timeoutMs ?? 1_000;
  const pgDefault = probe.defaultPostgresUrl ?? DEFAULT_POSTGRES_URL;
  const redisDefault = probe.defaultRedisUrl ?? DEFAULT_REDIS_URL;

  if (env.ORDERS_EMBEDDED === '1') {
    return {
      postgres: { kind: 'embedded', dataDir: probe.embeddedDataDir },
      redis: { kind: 'memory' },
      summary:
        `Using embedded PostgreSQL (PGlite, ${where(probe.embeddedDataDir)}) and the in-memory ` +
        'idempotency store: ORDERS_EMBEDDED=1.',
    };
  }

  // Both probes at once: each may wait its full timeout when nothing is there.
  const [pg, redisServer] = await Promise.all([
    chooseServer('PostgreSQL', 'DATABASE_URL', env, pgDefault, (url) =>
      postgresAnswers(url, timeoutMs),
    ),
    chooseServer('Redis', 'REDIS_URL', env, redisDefault, (url) => redisAnswers(url, timeoutMs)),
  ]);
  const postgres: Backends['postgres'] = pg.url
    ? { kind: 'server', url: pg.url }
    : { kind: 'embedded', dataDir: probe.embeddedDataDir };
  const pgWhy = pg.url
    ? pg.why
    : `embedded PostgreSQL (PGlite, ${where(probe.embeddedDataDir)}): ${pg.why}`;
  const redis: Backends['redis'] = redisServer.url
    ? { kind: 'server', url: redisServer.url }
    : { kind: 'memory' };
  const redisWhy = redisServer.url
    ? redisServer.why
    : `the in-memory idempotency store: ${redisServer.why}`;
  return { postgres, redis, summary: `Using ${pgWhy}; ${redisWhy}.` };
}

/**
 * The server `variable` names (taken as given), else the default one if it answers, else none;
 * with the reason, for the log line.
 */
async function chooseServer(
  label: string,
  variable: string,
  env: NodeJS.ProcessEnv,
  defaultUrl: string,
  answers: (url: string) => Promise<boolean>,
): Promise<{ url?: string; why: string }> {
  const given = env[variable];
  if (given) return { url: given, why: `${label} at ${redact(given)} (${variable})` };
  if (await answers(defaultUrl)) {
    return {
      url: defaultUrl,
      why: `${label} at ${redact(defaultUrl)} (found running; set ${variable} to choose)`,
    };
  }
  return { why: `no ${variable} and nothing answering at ${redact(defaultUrl)}` };
}

async function postgresAnswers(url: string, timeoutMs: number): Promise<boolean> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function redisAnswers(url: string, timeoutMs: number): Promise<boolean> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

const where = (dataDir: string | undefined) => (dataDir ? `data in ${dataDir}` : 'in memory');

/** Passwords do not belong in logs. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}
