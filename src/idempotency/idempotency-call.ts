import {
  createParamDecorator,
  ExecutionContext,
  Injectable,
  OnModuleInit,
  Optional,
  PipeTransform,
} from '@nestjs/common';
import type { PlatformResponse } from '../platform/http-platform';
import { IdempotencyExecutor } from './idempotency-executor';
import type { IdempotentRequest } from './idempotent.options';

/**
 * What an `@Idempotent()` handler receives as its hidden argument: the HTTP request and response,
 * and the executor of the application serving them. Private fields, so no pipe that walks the
 * arguments of a route (global pipes see custom parameters too) can see or alter what it holds.
 */
export class IdempotencyCall {
  readonly #request: IdempotentRequest;
  readonly #response: PlatformResponse;
  #executor?: IdempotencyExecutor;

  constructor(request: IdempotentRequest, response: PlatformResponse) {
    this.#request = request;
    this.#response = response;
  }

  get request(): IdempotentRequest {
    return this.#request;
  }

  get response(): PlatformResponse {
    return this.#response;
  }

  get executor(): IdempotencyExecutor | undefined {
    return this.#executor;
  }

  withExecutor(executor: IdempotencyExecutor): this {
    this.#executor = executor;
    return this;
  }
}

/**
 * Hands the executor to the call. A pipe because pipes are created by Nest's DI in the module of
 * the controller that uses them: that is how a handler reaches the module of its own application
 * (several may run in one process), with no registry and nothing read off platform objects.
 */
@Injectable()
export class IdempotencyExecutorPipe implements PipeTransform, OnModuleInit {
  constructor(@Optional() private readonly executor?: IdempotencyExecutor) {}

  onModuleInit(): void {
    if (!this.executor) {
      throw new Error(
        '@Idempotent() routes need SseModule.forRoot() in this application (and, with ' +
          'isGlobal: false, imported by the module of each controller that uses @Idempotent())',
      );
    }
  }

  transform(value: unknown): unknown {
    return value instanceof IdempotencyCall ? value.withExecutor(this.executor!) : value;
  }
}

/** The hidden parameter of `@Idempotent()` handlers. Undefined outside HTTP (microservices). */
export const IdempotencyCallParam = createParamDecorator(
  (_data: unknown, context: ExecutionContext): IdempotencyCall | undefined => {
    if (context.getType() !== 'http') return undefined;
    const http = context.switchToHttp();
    return new IdempotencyCall(http.getRequest(), http.getResponse());
  },
);
