import { INestApplication, ModuleMetadata, NestApplicationOptions, Type } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test, TestingModule } from '@nestjs/testing';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { SseModule } from '../../src';
import type { SseModuleExtras, SseModuleOptions } from '../../src';

export interface TestApp {
  app: INestApplication;
  url: string;
  close(): Promise<void>;
}

/** The HTTP platforms every HTTP-facing suite runs on (`describe.each(PLATFORMS)`). */
export const PLATFORMS = ['express', 'fastify'] as const;
export type Platform = (typeof PLATFORMS)[number];

/**
 * Creates the Nest application of a compiled testing module on `platform` (not initialized).
 * `trustProxy` turns on the platform's own trust-proxy setting.
 */
export function createNestApp(
  moduleRef: TestingModule,
  platform: Platform,
  options: NestApplicationOptions & { trustProxy?: boolean } = {},
): INestApplication {
  const { trustProxy, ...appOptions } = options;
  if (platform === 'fastify')
    return moduleRef.createNestApplication(new FastifyAdapter({ trustProxy }), appOptions);
  const app = moduleRef.createNestApplication<NestExpressApplication>(appOptions);
  if (trustProxy) app.set('trust proxy', true);
  return app;
}

/**
 * A real Nest app listening on a free loopback port, on Express unless `extra.platform` says;
 * `extra.trustProxy` turns on the platform's own trust-proxy setting.
 */
export async function startApp(
  controllers: Type<unknown>[],
  options: SseModuleOptions & SseModuleExtras = {},
  extra: ModuleMetadata & {
    platform?: Platform;
    trustProxy?: boolean;
    /** Runs before the app listens (app.enableCors(), a platform hook…). */
    beforeListen?: (app: INestApplication) => void;
  } = {},
): Promise<TestApp> {
  const moduleRef = await Test.createTestingModule({
    imports: [SseModule.forRoot(options), ...(extra.imports ?? [])],
    controllers,
    providers: extra.providers ?? [],
  }).compile();
  const app = createNestApp(moduleRef, extra.platform ?? 'express', {
    logger: ['error'],
    trustProxy: extra.trustProxy,
  });
  extra.beforeListen?.(app);
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  let closed = false;
  return {
    app,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
    },
  };
}

export interface RawStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Everything received so far, decoded as UTF-8. */
  text(): string;
  /** Resolves once the received text satisfies `predicate` (or rejects when the stream ends first). */
  until(predicate: (text: string) => boolean, what?: string): Promise<string>;
  /** Resolves when the server ends or the connection closes. */
  ended: Promise<void>;
  request: http.ClientRequest;
  response: http.IncomingMessage;
  close(): void;
}

/** A plain HTTP GET that exposes the exact bytes of the response, for wire-format assertions. */
export function openRaw(
  url: string,
  headers: Record<string, string> = {},
  agent?: http.Agent,
): Promise<RawStream> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, {
      headers: { accept: 'text/event-stream', ...headers },
      agent: agent ?? false,
    });
    request.on('error', reject);
    request.on('response', (response) => {
      let text = '';
      const waiters = new Set<() => void>();
      let done = false;
      const ended = new Promise<void>((resolveEnded) => {
        const finish = () => {
          if (done) return;
          done = true;
          resolveEnded();
          for (const w of waiters) w();
        };
        response.on('end', finish);
        response.on('close', finish);
        response.on('error', finish);
      });
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        text += chunk;
        for (const w of waiters) w();
      });
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        text: () => text,
        until: (predicate, what = 'expected data') =>
          new Promise((resolveUntil, rejectUntil) => {
            const check = () => {
              if (predicate(text)) {
                waiters.delete(check);
                resolveUntil(text);
              } else if (done) {
                waiters.delete(check);
                rejectUntil(
                  new Error(`stream ended before ${what}; received ${JSON.stringify(text)}`),
                );
              }
            };
            waiters.add(check);
            check();
          }),
        ended,
        request,
        response,
        close: () => request.destroy(),
      });
    });
  });
}

/** Reads a whole non-stream response. */
export async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const stream = await openRaw(url, headers);
  await stream.ended;
  return { status: stream.status, headers: stream.headers, body: stream.text() };
}
