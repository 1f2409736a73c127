import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Debian's nginx (`nginx-light` or `nginx`); `.ci/run` installs it when missing. */
export const NGINX = process.env.NGINX_PATH ?? '/usr/sbin/nginx';

export interface Nginx {
  url: string;
  close(): Promise<void>;
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

/**
 * Runs the repository's `docker/nginx.conf` for real, outside Docker: as the official image does
 * (the file is its `conf.d/default.conf`, inside `http {}`), with only the addresses replaced —
 * `app1:3000` / `app2:3000` by `upstreams`, `listen 80` by a free loopback port — and a prefix
 * of its own for pid, logs and temp files. Everything else is the file as shipped.
 */
export async function startRepositoryNginx(upstreams: [string, string]): Promise<Nginx> {
  const version = spawnSync(NGINX, ['-v'], { encoding: 'utf8' });
  if (version.error) {
    throw new Error(
      `nginx not found at ${NGINX}: install Debian's nginx-light package (.ci/run does this) ` +
        'or set NGINX_PATH. This test fails rather than pass without it.',
    );
  }
  const port = await freePort();
  const shipped = readFileSync(join(__dirname, '..', '..', 'docker', 'nginx.conf'), 'utf8');
  const site = shipped
    .replace('server app1:3000', `server ${upstreams[0]}`)
    .replace('server app2:3000', `server ${upstreams[1]}`)
    .replace(/listen 80;/, `listen 127.0.0.1:${port};`);
  if (site === shipped || site.includes('app1:3000') || site.includes('listen 80;'))
    throw new Error(
      'docker/nginx.conf no longer has the upstreams and listen line this test replaces',
    );
  const dir = mkdtempSync(join(tmpdir(), 'durable-sse-nginx-'));
  const temp = (name: string) => `${name}_temp_path ${join(dir, name)};`;
  const conf = [
    'daemon off;',
    'worker_processes 1;',
    // As root, workers would switch to "nobody", who cannot write this temp dir.
    ...(process.getuid?.() === 0 ? ['user root root;'] : []),
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 512; }',
    'http {',
    `  access_log off;`,
    `  ${temp('client_body')} ${temp('proxy')} ${temp('fastcgi')} ${temp('uwsgi')} ${temp('scgi')}`,
    site,
    '}',
  ].join('\n');
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const child: ChildProcess = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${stderr}`);
    const answered = await fetch(`${url}/health`).then(
      () => true,
      () => false,
    );
    if (answered) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not answer within 10 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url,
    close: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM'); // fast shutdown: open streams are cut, not waited for
        const killer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(killer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
