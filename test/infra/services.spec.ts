// The provisioning the whole suite relies on (README.md, "Two commands"), checked against real servers.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const services = require('../support/services');

function roundTrip(url: string, probe: Buffer | string): Promise<Buffer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) }, () => socket.write(probe));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data);
    });
    socket.once('error', reject);
  });
}

describe('test services', () => {
  it('exposes answering PostgreSQL and Redis servers to every worker', async () => {
    expect(process.env.DATABASE_URL).toMatch(/^postgres:\/\//);
    expect(process.env.REDIS_URL).toMatch(/^redis:\/\//);
    await expect(services.postgresAnswers(process.env.DATABASE_URL)).resolves.toBe(true);
    expect((await roundTrip(process.env.REDIS_URL!, 'PING\r\n')).toString()).toBe('+PONG\r\n');
  });

  it('starts, stops and restarts a private Redis on its own port', async () => {
    const redis = await services.startPrivateRedis();
    try {
      expect(redis.url).not.toBe(process.env.REDIS_URL);
      await expect(services.redisAnswers(redis.url)).resolves.toBe(true);
      await redis.stop();
      await expect(services.redisAnswers(redis.url)).resolves.toBe(false);
      await redis.start();
      await expect(services.redisAnswers(redis.url)).resolves.toBe(true);
    } finally {
      await redis.destroy();
    }
  });

  it('starts and stops a private PostgreSQL with a test database', async () => {
    const pg = await services.startPrivatePostgres();
    try {
      expect(pg.url).toMatch(/\/test$/);
      await expect(services.postgresAnswers(pg.url)).resolves.toBe(true);
      await pg.stop();
      await expect(services.postgresAnswers(pg.url)).resolves.toBe(false);
    } finally {
      await pg.destroy();
    }
  }, 60_000);

  it('fails at once, saying how to provide a server, when one is neither reachable nor installed', async () => {
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'durable-sse-nobin-'));
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    const closedPort = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    try {
      const script = `require(${JSON.stringify(require.resolve('../support/services'))}).ensureServices().then(() => process.exit(0), (e) => { console.error(e.message); process.exit(3); })`;
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = execFile(
          path.join(bin, 'node'),
          ['-e', script],
          {
            env: {
              PATH: bin,
              DATABASE_URL: process.env.DATABASE_URL,
              REDIS_URL: `redis://127.0.0.1:${closedPort}`,
            },
          },
          (_error, _stdout, stderr) => resolve({ code: child.exitCode, stderr }),
        );
      });
      expect(result.code).toBe(3);
      expect(result.stderr).toContain(
        `nothing answers at redis://127.0.0.1:${closedPort} and redis-server is not installed`,
      );
      expect(result.stderr).toContain('point DATABASE_URL');
    } finally {
      fs.rmSync(bin, { recursive: true, force: true });
    }
  });
});
