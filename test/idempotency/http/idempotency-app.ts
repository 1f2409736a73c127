/**
 * The app the @Idempotent() HTTP suites run against (test/idempotency/idempotency-*.spec.ts):
 * its routes, two instances of it on one Redis topology, and request helpers.
 */
import {
  Body,
  CanActivate,
  ConflictException,
  Controller,
  ExecutionContext,
  Get,
  Header,
  Injectable,
  InternalServerErrorException,
  Param,
  Post,
  Res,
  UseGuards,
  ValidationPipe,
} from '@nestjs/common';
import { IsInt, IsString } from 'class-validator';
import { Cluster } from 'ioredis';
import { once } from 'node:events';
import { Idempotent, SseModuleOptions } from '../../../src';
import { Platform, startApp, TestApp } from '../../support/http';
import { deletePrefix, redisUrl, uniquePrefix } from '../../support/redis';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivateRedisCluster } = require('../../support/services');

/** Handler runs by name, since the current test began. */
export const runs: Record<string, number> = {};
const ran = (name: string) => (runs[name] = (runs[name] ?? 0) + 1);
let gate: Promise<void> = Promise.resolve();
let entered: () => void = () => undefined;

/**
 * Holds the next `/slow` request in its handler (it has taken the key) until `open()`:
 * `inHandler` resolves once it is there.
 */
export function holdSlow(): { open: () => void; inHandler: Promise<void> } {
  let open!: () => void;
  gate = new Promise((resolve) => (open = resolve));
  const inHandler = new Promise<void>((resolve) => (entered = resolve));
  return { open, inHandler };
}

class CreateOrder {
  @IsString() item!: string;
  @IsInt() quantity!: number;
}

@Injectable()
class HeaderAuth implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest();
    const user = request.headers['x-user'];
    if (!user) return false;
    request.user = { id: user };
    return true;
  }
}

/** The shape of NestJS's own JWT example: a principal with neither `id` nor `sub`. */
@Injectable()
class UserIdAuth implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest();
    request.user = { userId: request.headers['x-user'], username: 'someone' };
    return true;
  }
}

@Controller()
export class OrdersController {
  private next = 0;

  @Post('orders')
  @Idempotent()
  @Header('Location', '/orders/latest')
  create(@Body() body: unknown) {
    ran('create');
    return { order: ++this.next, received: body, note: 'é ✓' };
  }

  @Post('orders/other')
  @Idempotent()
  other(@Body() body: unknown) {
    ran('other');
    return { other: true, received: body };
  }

  @Post('required')
  @Idempotent({ required: true })
  required() {
    ran('required');
    return 'ok';
  }

  @Post('flaky/:mode')
  @Idempotent()
  flaky(@Param('mode') mode: string) {
    const count = ran(`flaky:${mode}`);
    if (mode === '500' && count === 1) throw new InternalServerErrorException('try again');
    if (mode === 'crash' && count === 1) throw new Error('unexpected');
    if (mode === '409') throw new ConflictException({ code: 'SOLD_OUT', count });
    return { count };
  }

  @Post('validated')
  @Idempotent()
  validated(@Body(new ValidationPipe()) body: CreateOrder) {
    ran('validated');
    return body;
  }

  @Post('slow')
  @Idempotent()
  async slow() {
    ran('slow');
    entered();
    await gate;
    return { slow: true };
  }

  @Post('secure')
  @UseGuards(HeaderAuth)
  @Idempotent()
  secure(@Body() body: unknown) {
    return { count: ran('secure'), body };
  }

  @Post('jwt-shaped')
  @UseGuards(UserIdAuth)
  @Idempotent()
  jwtShaped(@Body() body: unknown) {
    return { count: ran('jwt-shaped'), body };
  }

  @Post('jwt-shaped/scoped')
  @UseGuards(UserIdAuth)
  @Idempotent({ scope: (request) => String(request.user.userId) })
  jwtScoped(@Body() body: unknown) {
    return { count: ran('jwt-scoped'), body };
  }

  @Post('cookie')
  @Idempotent({ storedHeaders: ['set-cookie', 'x-request-cost'] })
  // header() and send(): the API Express' res and Fastify's reply share.
  cookie(@Res({ passthrough: true }) response: { header(name: string, value: string): void }) {
    ran('cookie');
    response.header('Set-Cookie', 'session=secret');
    response.header('X-Request-Cost', '7');
    return { cookie: true };
  }

  @Post('raw')
  @Idempotent()
  raw(@Res() response: { status(code: number): { send(body: unknown): void } }) {
    response.status(201).send({ raw: ran('raw') });
  }

  @Get('orders')
  @Idempotent({ required: true })
  list() {
    return { list: ran('list') };
  }
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

export async function post(
  app: TestApp,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const response = await fetch(`${app.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** Resolves once `count` of `promises` have settled (whatever their outcome). */
export function settled(promises: Promise<unknown>[], count: number): Promise<void> {
  let done = 0;
  return new Promise((resolve) => {
    for (const promise of promises)
      void promise.finally(() => {
        if (++done === count) resolve();
      });
  });
}

/** Where the records live: options for SseModule.forRoot (redis + idempotency), and cleanup. */
export interface Backend {
  options: SseModuleOptions;
  cleanup(): Promise<void>;
}

/** One Redis server, under a key prefix of the suite's own. */
export async function singleRedis(): Promise<Backend> {
  const keyPrefix = uniquePrefix('idem-http');
  return {
    options: { redis: { url: redisUrl(), keyPrefix }, idempotency: { inFlightTtlSeconds: 30 } },
    cleanup: () => deletePrefix(redisUrl(), keyPrefix),
  };
}

/** A private 3-master Redis Cluster, through an ioredis Cluster client with `keyPrefix`. */
export async function redisCluster(keyPrefix?: string): Promise<Backend> {
  const cluster = await startPrivateRedisCluster(3);
  const client = new Cluster(cluster.nodes, {
    keyPrefix,
    enableOfflineQueue: false,
    redisOptions: { maxRetriesPerRequest: 1 },
  });
  await once(client, 'ready');
  return {
    options: { redis: { existingClient: client }, idempotency: { inFlightTtlSeconds: 30 } },
    cleanup: async () => {
      client.disconnect();
      await cluster.destroy();
    },
  };
}

/** Two instances of the app, on `platform`, sharing `backend`; `freshKey()` never repeats. */
export interface IdempotencyApps {
  readonly a: TestApp;
  readonly b: TestApp;
  freshKey(): string;
}

/** Starts {@link IdempotencyApps} before the enclosing describe's tests, and stops them after. */
export function useIdempotencyApps(
  platform: Platform,
  setup: () => Promise<Backend>,
): IdempotencyApps {
  let backend: Backend | undefined;
  let keyCounter = 0;
  const env = {
    freshKey: () => `key-${Date.now()}-${++keyCounter}`,
  } as { a: TestApp; b: TestApp; freshKey(): string };
  beforeAll(async () => {
    backend = await setup();
    env.a = await startApp([OrdersController], backend.options, { platform });
    env.b = await startApp([OrdersController], backend.options, { platform });
  }, 60_000);
  afterAll(async () => {
    await env.a?.close();
    await env.b?.close();
    await backend?.cleanup();
  });
  beforeEach(() => {
    for (const name of Object.keys(runs)) delete runs[name];
  });
  return env;
}
