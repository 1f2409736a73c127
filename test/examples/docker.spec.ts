import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const DOCKER = join(__dirname, '..', '..', 'docker');

/**
 * No Docker engine runs here, so the multi-instance demo is checked as far as a machine without
 * one can: compose validates the file (Debian's docker-compose; .ci/run installs it), and the
 * nginx settings SSE depends on are present.
 */
describe('docker/ multi-instance demo', () => {
  const compose = (...args: string[]) => {
    const result = spawnSync(
      'docker-compose',
      ['-f', join(DOCKER, 'docker-compose.yml'), ...args],
      {
        encoding: 'utf8',
      },
    );
    if (result.error) {
      throw new Error(
        `docker-compose could not run (${result.error.message}): install Debian's docker-compose ` +
          'package (.ci/run does). This test fails rather than pass without it.',
      );
    }
    return result;
  };

  it('is a valid compose file: postgres, redis, two app replicas and nginx', () => {
    const config = compose('config');
    expect(config.stderr).not.toMatch(/error|invalid/i);
    expect(config.status).toBe(0);
    const services = compose('config', '--services').stdout.trim().split('\n').sort();
    expect(services).toEqual(['app1', 'app2', 'nginx', 'postgres', 'redis']);
    // Both replicas share one database and one Redis, which is what makes them one service.
    expect(
      config.stdout.match(/DATABASE_URL: postgres:\/\/orders:orders@postgres:5432\/orders/g),
    ).toHaveLength(2);
    expect(config.stdout.match(/REDIS_URL: redis:\/\/redis:6379/g)).toHaveLength(2);
    expect(config.stdout).toMatch(/dockerfile: docker\/Dockerfile/);
  });

  it('proxies event streams without buffering, with long read timeouts, to both replicas', () => {
    const nginx = readFileSync(join(DOCKER, 'nginx.conf'), 'utf8');
    const upstream = /upstream orders \{([^}]*)\}/.exec(nginx)?.[1] ?? '';
    expect(upstream).toMatch(/server app1:3000/);
    expect(upstream).toMatch(/server app2:3000/);
    const stream =
      /location ~ \^\/orders\(\/\[0-9\]\+\)\?\/stream\$ \{([^}]*)\}/.exec(nginx)?.[1] ?? '';
    expect(stream).toMatch(/proxy_buffering off;/);
    expect(stream).toMatch(/proxy_http_version 1\.1;/);
    expect(stream).toMatch(/proxy_set_header Connection "";/);
    expect(stream).toMatch(/proxy_read_timeout 1h;/);
    // The location must match the example's stream routes.
    const pattern = new RegExp(
      /location ~ (\S+) \{/.exec(nginx.slice(nginx.indexOf('location ~')))![1],
    );
    expect(['/orders/stream', '/orders/42/stream'].every((p) => pattern.test(p))).toBe(true);
    expect(pattern.test('/orders')).toBe(false);
  });

  it('builds the example and runs it as an unprivileged user', () => {
    const dockerfile = readFileSync(join(DOCKER, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM node:20/m);
    expect(dockerfile).toMatch(/^RUN npm ci /m);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^CMD \["node", "\.tmp\/build\/examples\/orders\/main\.js"\]$/m);
  });
});
