// Start-up errors name the option they come from, not only the driver's words (issue 25, item 5).
// Real servers: the local PostgreSQL and Redis, and ports nothing listens on.
import { Test } from '@nestjs/testing';
import * as net from 'node:net';
import { Pool } from 'pg';
import { resolveSseModuleOptions, SseConfigError, SseModule, SseModuleOptions } from '../../src';
import { databaseUrl } from '../support/postgres';
import { redisUrl } from '../support/redis';
import { startApp } from '../support/http';

/** A loopback port nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function init(options: SseModuleOptions): Promise<void> {
  const moduleRef = await Test.createTestingModule({
    imports: [SseModule.forRoot(options)],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  try {
    await app.init();
  } finally {
    await app.close().catch(() => undefined);
  }
}

const withUser = (url: string, user: string) => {
  const parsed = new URL(url);
  parsed.username = user;
  return parsed.toString();
};

describe('PostgreSQL at start-up', () => {
  it('names the option and the server (password hidden) when nothing listens', async () => {
    const port = await closedPort();
    const error = await init({
      postgres: { connectionString: `postgres://app:s3cret@127.0.0.1:${port}/test` },
    }).catch((caught: Error) => caught);
    expect((error as Error).message).toBe(
      `SseModule could not use PostgreSQL (postgres.connectionString postgres://app:***@127.0.0.1:${port}/test): ` +
        `connect ECONNREFUSED 127.0.0.1:${port}`,
    );
  });

  it('names the option for a role the server does not know', async () => {
    await expect(
      init({ postgres: { connectionString: withUser(databaseUrl(), 'no_such_role') } }),
    ).rejects.toThrow(
      /^SseModule could not use PostgreSQL \(postgres\.connectionString postgres:\/\/no_such_role@.*\): role "no_such_role" does not exist$/,
    );
  });

  it("names existingPool when the app's own pool is the one that fails", async () => {
    const pool = new Pool({ connectionString: withUser(databaseUrl(), 'no_such_role') });
    try {
      await expect(init({ postgres: { existingPool: pool } })).rejects.toThrow(
        /^SseModule could not use PostgreSQL \(postgres\.existingPool\): role "no_such_role"/,
      );
    } finally {
      await pool.end();
    }
  });
});

describe('Redis at start-up', () => {
  it('refuses a database path that is not a number before connecting', () => {
    let error: SseConfigError | undefined;
    try {
      resolveSseModuleOptions({ redis: { url: 'redis://:pw@127.0.0.1:6379/banana' } });
    } catch (caught) {
      error = caught as SseConfigError;
    }
    expect(error).toBeInstanceOf(SseConfigError);
    expect(error!.issues).toEqual([
      {
        path: 'redis.url',
        message:
          'names the database by its number, as in redis://host:6379/2 (got the path "/banana")',
      },
    ]);
  });

  it('fails start-up for a database the server does not have, instead of running on db 0', async () => {
    const url = new URL(redisUrl());
    url.pathname = '/99';
    await expect(init({ redis: { url: url.toString() } })).rejects.toThrow(
      /^SseModule: redis\.url \(redis:\/\/.*\/99\) names database 99, which this Redis server does not have \(ERR DB index is out of range\)/,
    );
  });

  it('health says "unreachable" and why while Redis is down, not the client library\'s internals', async () => {
    const port = await closedPort();
    const t = await startApp([], {
      redis: { url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 200 },
    });
    try {
      const response = await fetch(`${t.url}/health`);
      expect(response.status).toBe(503);
      const body = (await response.json()) as { error: Record<string, { message: string }> };
      expect(body.error.redis.message).toBe(`unreachable: connect ECONNREFUSED 127.0.0.1:${port}`);
    } finally {
      await t.close();
    }
  });
});
