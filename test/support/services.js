'use strict';
/**
 * Real PostgreSQL and Redis for the test suite (README.md, "Two commands").
 *
 * ensureServices(): uses DATABASE_URL / REDIS_URL (defaults below) when a server answers there;
 * where the server is installed but not running, starts a private one in a temp dir on a free
 * port; with neither, fails at once saying how to provide one.
 * startPrivatePostgres() / startPrivateRedis(): throwaway servers for failure tests (kill,
 * restart), never the shared ones.
 */
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** Sends `probe` and resolves true when the reply satisfies `accept` within the timeout. */
function talk(host, port, probe, accept, timeoutMs = 1500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let reply = Buffer.alloc(0);
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write(probe));
    socket.on('data', (chunk) => {
      reply = Buffer.concat([reply, chunk]);
      if (accept(reply)) done(true);
    });
    socket.once('close', () => done(accept(reply)));
  });
}

/** PostgreSQL answers an SSLRequest with a single 'S' or 'N' byte. */
function postgresAnswers(url) {
  const { hostname, port } = new URL(url);
  const sslRequest = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  return talk(
    hostname,
    Number(port || 5432),
    sslRequest,
    (r) => r.length >= 1 && (r[0] === 0x53 || r[0] === 0x4e),
  );
}

function redisAnswers(url) {
  const { hostname, port } = new URL(url);
  return talk(hostname, Number(port || 6379), 'PING\r\n', (r) => r.toString().startsWith('+PONG'));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(check, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function postgresBinDir() {
  const candidates = [];
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim());
  } catch {
    /* not on PATH */
  }
  const debian = '/usr/lib/postgresql';
  if (fs.existsSync(debian)) {
    for (const version of fs.readdirSync(debian).sort((a, b) => Number(b) - Number(a))) {
      candidates.push(path.join(debian, version, 'bin'));
    }
  }
  return candidates.find(
    (dir) => fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'postgres')),
  );
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

function redisServerBinary() {
  return onPath('redis-server');
}

// PostgreSQL refuses to run as root, and CI runs as root: its processes then run as the
// `postgres` user (spawned with uid/gid, so signals reach the postmaster itself).
function postgresUser() {
  if (!process.getuid || process.getuid() !== 0) return {};
  const id = (flag) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

/**
 * Starts a private PostgreSQL in a temp dir on a free port. Fast and not crash-safe (fsync and
 * synchronous_commit off), unless `durable`: then a crash loses no acknowledged commit.
 */
async function startPrivatePostgres({ database = 'test', durable = false } = {}) {
  const bin = postgresBinDir();
  if (!bin) throw new Error('PostgreSQL is not installed (no initdb/postgres binaries found)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'durable-sse-pg-'));
  const dataDir = path.join(dir, 'data');
  const user = postgresUser();
  if (user.uid !== undefined) fs.chownSync(dir, user.uid, user.gid);
  const stdio = process.env.DEBUG_SERVICES ? 'inherit' : 'ignore';
  execFileSync(
    path.join(bin, 'initdb'),
    ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'],
    { stdio, ...user },
  );

  const port = await freePort();
  const postgresArgs = [
    '-D',
    dataDir,
    '-p',
    String(port),
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
    ...(durable
      ? []
      : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
    '-c',
    'max_connections=200',
  ];
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const server = processHandle({
    url: `postgres://postgres@127.0.0.1:${port}/${database}`,
    port,
    dir,
    // SIGINT is PostgreSQL's fast shutdown: open connections are terminated.
    stopSignal: 'SIGINT',
    spawnServer: () => spawn(path.join(bin, 'postgres'), postgresArgs, { stdio, ...user }),
    // The postmaster answers before it accepts logins; createdb below retries until it can.
    ready: () => postgresAnswers(adminUrl),
  });
  await server.start();
  const createdb = ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', database];
  await waitFor(
    () => spawnSync(path.join(bin, 'createdb'), createdb, { stdio, ...user }).status === 0,
    'createdb',
  );
  return server;
}

/**
 * A restartable server process: `stop()` / `start()` keep its port and files (for outage tests),
 * `destroy()` stops it and deletes its files.
 */
function processHandle({ url, port, dir, stopSignal, spawnServer, ready }) {
  let child;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(stopSignal);
    await exited;
  };
  return {
    url,
    port,
    pid: () => child.pid,
    /** Kills the server with `signal` (e.g. SIGQUIT: PostgreSQL's immediate shutdown, a crash). */
    kill: async (signal) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill(signal);
      await exited;
    },
    start: async () => {
      child = spawnServer();
      await waitFor(ready, `the server at ${url}`);
    },
    stop,
    destroy: async () => {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A redis-server process on a free port in a temp dir of its own; it keeps nothing on disk. */
async function startRedisProcess(binary, extraArgs = () => []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'durable-sse-redis-'));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
  ];
  const server = processHandle({
    url,
    port,
    dir,
    stopSignal: 'SIGTERM',
    spawnServer: () => spawn(binary, [...args, ...extraArgs(dir)], { stdio: 'ignore' }),
    ready: () => redisAnswers(url),
  });
  await server.start();
  return server;
}

/**
 * Starts a private redis-server on a free port. It keeps nothing on disk, unless `appendOnly`:
 * then every write is in its AOF (fsync always) and survives a restart.
 */
async function startPrivateRedis({ appendOnly = false } = {}) {
  const binary = redisServerBinary();
  if (!binary) throw new Error('Redis is not installed (redis-server not on PATH)');
  return startRedisProcess(binary, () =>
    appendOnly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : [],
  );
}

/**
 * A private Redis Cluster of `masters` nodes (no replicas) on free ports, created with
 * `redis-cli --cluster create`; resolves once every slot is served.
 */
async function startPrivateRedisCluster(masters = 3) {
  const binary = redisServerBinary();
  const cli = onPath('redis-cli');
  if (!binary || !cli)
    throw new Error('Redis is not installed (redis-server/redis-cli not on PATH)');
  const clusterArgs = (dir) => [
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    path.join(dir, 'nodes.conf'),
    '--cluster-node-timeout',
    '5000',
  ];
  const nodes = [];
  try {
    for (let i = 0; i < masters; i++) nodes.push(await startRedisProcess(binary, clusterArgs));
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
    execFileSync(
      cli,
      ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
      {
        stdio: 'ignore',
      },
    );
    const info = () =>
      spawnSync(cli, ['-p', String(nodes[0].port), 'cluster', 'info'], { encoding: 'utf8' })
        .stdout ?? '';
    await waitFor(
      async () => info().includes('cluster_state:ok'),
      'the cluster to serve every slot',
    );
  } catch (error) {
    await Promise.all(nodes.map((n) => n.destroy()));
    throw error;
  }
  return {
    nodes: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
    destroy: () => Promise.all(nodes.map((n) => n.destroy())).then(() => undefined),
  };
}

const HOW_TO = [
  'The tests need PostgreSQL and Redis. Either:',
  '  - point DATABASE_URL (default ' +
    DEFAULT_DATABASE_URL +
    ') and REDIS_URL (default ' +
    DEFAULT_REDIS_URL +
    ') at running servers, or',
  '  - install them (Debian: apt-get install -y postgresql redis-server) and the tests start private ones.',
].join('\n');

/**
 * Makes DATABASE_URL and REDIS_URL point at answering servers. Returns a function that stops
 * whatever was started here.
 */
async function ensureServices(log = (line) => process.stderr.write(line + '\n')) {
  const started = [];
  const problems = [];

  const databaseUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
  if (await postgresAnswers(databaseUrl)) {
    process.env.DATABASE_URL = databaseUrl;
  } else if (postgresBinDir()) {
    const pg = await startPrivatePostgres();
    started.push(pg);
    process.env.DATABASE_URL = pg.url;
    log(`[services] nothing answered at ${databaseUrl}; started a private PostgreSQL at ${pg.url}`);
  } else {
    problems.push(
      `PostgreSQL: nothing answers at ${databaseUrl} and no PostgreSQL installation was found`,
    );
  }

  const redisUrl = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  if (await redisAnswers(redisUrl)) {
    process.env.REDIS_URL = redisUrl;
  } else if (redisServerBinary()) {
    const redis = await startPrivateRedis();
    started.push(redis);
    process.env.REDIS_URL = redis.url;
    log(`[services] nothing answered at ${redisUrl}; started a private Redis at ${redis.url}`);
  } else {
    problems.push(`Redis: nothing answers at ${redisUrl} and redis-server is not installed`);
  }

  if (problems.length > 0) {
    await Promise.all(started.map((s) => s.destroy()));
    throw new Error(`${problems.join('\n')}\n\n${HOW_TO}`);
  }
  return async () => {
    await Promise.all(started.map((s) => s.destroy()));
  };
}

module.exports = {
  DEFAULT_DATABASE_URL,
  DEFAULT_REDIS_URL,
  ensureServices,
  startPrivatePostgres,
  startPrivateRedis,
  startPrivateRedisCluster,
  postgresAnswers,
  redisAnswers,
};
