import { Controller, LoggerService, Post } from '@nestjs/common';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Idempotent, SSE_LOG_MESSAGES, SSE_LOG_THROTTLE_MS, SSE_LOGGER } from '../../src';
import { SseLogger } from '../../src/observability/sse-logger';
import { startApp } from '../support/http';

/** A LoggerService that keeps every call: [level, message, ...params]. */
class CollectingLogger implements LoggerService {
  readonly lines: Array<[string, string, ...unknown[]]> = [];
  log = (message: string, ...params: unknown[]) => this.lines.push(['log', message, ...params]);
  warn = (message: string, ...params: unknown[]) => this.lines.push(['warn', message, ...params]);
  error = (message: string, ...params: unknown[]) => this.lines.push(['error', message, ...params]);
}

const root = path.join(__dirname, '../..');
const ids = Object.keys(SSE_LOG_MESSAGES) as Array<keyof typeof SSE_LOG_MESSAGES>;

describe('log message ids', () => {
  it('are each documented in docs/observability.md with their level', () => {
    const doc = fs.readFileSync(path.join(root, 'docs/observability.md'), 'utf8');
    const documented = Object.fromEntries(
      [...doc.matchAll(/^\| `([a-z]+\.[a-z-]+)` +\| (log|warn|error) +\|/gm)].map((m) => [
        m[1],
        m[2],
      ]),
    );
    expect(documented).toEqual(
      Object.fromEntries(ids.map((id) => [id, SSE_LOG_MESSAGES[id].level])),
    );
  });

  it('are each written somewhere in src/, and src/ logs through nothing else', () => {
    const unused = ids.filter((id) => {
      try {
        execFileSync('grep', ['-rlF', `'${id}'`, 'src', '--exclude=log-messages.ts'], {
          cwd: root,
        });
        return false;
      } catch {
        return true;
      }
    });
    expect(unused).toEqual([]);
    // Nest's Logger is constructed in one place only: the default SSE_LOGGER.
    const loggers = execFileSync('grep', ['-rn', 'new Logger(', 'src'], {
      cwd: root,
      encoding: 'utf8',
    })
      .trim()
      .split('\n')
      .map((line) => line.split(':')[0]);
    expect([...new Set(loggers)].sort()).toEqual([
      'src/observability/sse-logger.ts',
      'src/sse.module.ts',
    ]);
  });
});

describe('SseLogger (a clock set by the test)', () => {
  let now = 1_000_000;
  beforeEach(() => jest.spyOn(Date, 'now').mockImplementation(() => now));
  afterEach(() => jest.restoreAllMocks());

  it('writes an id once per window, then says how many it left out', () => {
    const target = new CollectingLogger();
    const logger = new SseLogger(target);
    for (let i = 0; i < 50; i++) logger.report('outbox.read-failed', `read ${i} failed`);
    logger.report('outbox.listen-lost', 'another id is not held back');
    now += SSE_LOG_THROTTLE_MS - 1;
    logger.report('outbox.read-failed', 'still inside the window');
    now += 1;
    logger.report('outbox.read-failed', 'read 51 failed');
    expect(target.lines).toEqual([
      ['warn', '[outbox.read-failed] read 0 failed', 'SseOutbox'],
      ['warn', '[outbox.listen-lost] another id is not held back', 'SseOutbox'],
      [
        'warn',
        '[outbox.read-failed] read 51 failed (50 more [outbox.read-failed] in the 5 s before were not logged)',
        'SseOutbox',
      ],
    ]);
  });

  it('throttles per key when given one, writes errors with their stack, and each id at its level and context', () => {
    const target = new CollectingLogger();
    const logger = new SseLogger(target);
    logger.report('idempotency.route', 'A.a: no scope', { key: 'A.a' });
    logger.report('idempotency.route', 'B.b: no scope', { key: 'B.b' });
    logger.report('job.failed', 'Job 1 failed: boom', { stack: 'Error: boom\n    at x' });
    logger.report('job.end-failed', 'no stack');
    logger.report('fanout.leading', 'leading');
    expect(target.lines).toEqual([
      ['warn', '[idempotency.route] A.a: no scope', 'SseIdempotency'],
      ['warn', '[idempotency.route] B.b: no scope', 'SseIdempotency'],
      ['error', '[job.failed] Job 1 failed: boom', 'Error: boom\n    at x', 'SseJobs'],
      ['error', '[job.end-failed] no stack', 'SseJobs'],
      ['log', '[fanout.leading] leading', 'SseFanout'],
    ]);
  });
});

@Controller()
class OrdersController {
  @Post('orders')
  @Idempotent()
  place() {
    return { ok: true };
  }
}

describe('the SSE_LOGGER provider (real app, Redis unreachable)', () => {
  it('receives every line of the module, and a flood of failing requests as one line', async () => {
    const target = new CollectingLogger();
    const t = await startApp([OrdersController], {
      // Nothing listens on port 1: every idempotent request meets a failing store.
      redis: { url: 'redis://127.0.0.1:1', commandTimeoutMs: 200, connectTimeoutMs: 200 },
      idempotency: { failMode: 'closed' },
      providers: [{ provide: SSE_LOGGER, useValue: target }],
    });
    try {
      const statuses = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          fetch(`${t.url}/orders`, {
            method: 'POST',
            headers: { 'idempotency-key': `flood-${i}` },
          }).then((r) => r.status),
        ),
      );
      expect(statuses).toEqual(Array(30).fill(503));
      const unavailable = target.lines.filter(([, m]) =>
        m.startsWith('[idempotency.store-unavailable] '),
      );
      expect(unavailable).toEqual([
        ['error', expect.stringMatching(/Idempotency store unavailable: /), 'SseIdempotency'],
      ]);
      // Every line the module wrote carries a known id.
      for (const [level, message] of target.lines) {
        const id = /^\[([a-z]+\.[a-z-]+)\] /.exec(message)?.[1] as keyof typeof SSE_LOG_MESSAGES;
        expect(SSE_LOG_MESSAGES[id]?.level).toBe(level);
      }
      expect(target.lines.some(([, m]) => m.startsWith('[redis.'))).toBe(true);
    } finally {
      await t.close();
    }
  });
});
