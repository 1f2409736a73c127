import { Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ExpressPlatform } from './express-platform';
import { FastifyPlatform } from './fastify-platform';
import type { HttpPlatform } from './http-platform';

/**
 * The {@link HttpPlatform} of this application, chosen from Nest's HTTP adapter. Resolved on
 * first use: a testing module creates its providers before it is given an adapter.
 */
@Injectable()
export class HttpPlatformHost {
  private resolved?: HttpPlatform;

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  get platform(): HttpPlatform {
    return (this.resolved ??= this.resolve());
  }

  /** True when the application serves HTTP (not a bare application context or microservice). */
  get available(): boolean {
    return this.adapterHost.httpAdapter !== undefined;
  }

  private resolve(): HttpPlatform {
    const adapter = this.adapterHost.httpAdapter;
    if (!adapter) throw new Error('nestjs-durable-sse: this application has no HTTP adapter');
    const type = adapter.getType();
    switch (type) {
      case 'express':
        return new ExpressPlatform();
      case 'fastify':
        return new FastifyPlatform(adapter.getInstance());
      default:
        throw new Error(
          `nestjs-durable-sse supports @nestjs/platform-express and @nestjs/platform-fastify; ` +
            `this application runs on "${type}"`,
        );
    }
  }
}
