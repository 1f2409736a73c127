import { SetMetadata, UseFilters } from '@nestjs/common';
import { METHOD_METADATA } from '@nestjs/common/constants';
import { wrapWithHiddenArgument } from '../common/hidden-argument';
import { IdempotencyCall, IdempotencyCallParam, IdempotencyExecutorPipe } from './idempotency-call';
import { markIdempotentHandler } from './idempotent-routes';
import { IdempotencyProblemFilter } from './idempotency-problem';
import { IDEMPOTENT_METADATA, IdempotentOptions } from './idempotent.options';

/**
 * Makes a route (or every non-GET route of a controller) idempotent by `Idempotency-Key`.
 * GET, HEAD and OPTIONS always pass through. Options override the module's `idempotency` ones.
 *
 * It wraps the handler itself (no interceptor): the key is taken after guards, interceptors and
 * pipes accepted the request, and a replay is answered by the route's exception filter with the
 * bytes sent the first time. See docs/idempotency.md.
 */
export function Idempotent(options: IdempotentOptions = {}): MethodDecorator & ClassDecorator {
  return ((target: object, key?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (descriptor && key !== undefined) {
      wrapHandler(target, key, descriptor);
      SetMetadata(IDEMPOTENT_METADATA, options)(target, key, descriptor);
      return descriptor;
    }
    const prototype = (target as { prototype: object }).prototype;
    for (const name of Object.getOwnPropertyNames(prototype)) {
      const method = Object.getOwnPropertyDescriptor(prototype, name);
      if (name === 'constructor' || typeof method?.value !== 'function') continue;
      // Only route handlers, and only those without their own @Idempotent().
      if (Reflect.getMetadata(METHOD_METADATA, method.value) === undefined) continue;
      if (Reflect.getMetadata(IDEMPOTENT_METADATA, method.value) !== undefined) continue;
      wrapHandler(prototype, name, method);
      Object.defineProperty(prototype, name, method);
    }
    SetMetadata(IDEMPOTENT_METADATA, options)(target as new (...args: never[]) => unknown);
  }) as MethodDecorator & ClassDecorator;
}

function wrapHandler(target: object, key: string | symbol, descriptor: PropertyDescriptor): void {
  // The wrapper itself (set below): what Nest registers, and what the route's metadata is read from.
  const wrapped: { handler?: object } = {};
  wrapWithHiddenArgument(
    target,
    key,
    descriptor,
    IdempotencyCallParam(undefined, IdempotencyExecutorPipe),
    function (this: object, hidden: unknown, call: () => unknown) {
      if (hidden === undefined) return call(); // not HTTP (e.g. a microservice)
      if (!(hidden instanceof IdempotencyCall) || !hidden.executor) {
        throw new Error(
          `@Idempotent() on ${this.constructor.name}.${String(key)} lost its hidden argument: a ` +
            'global or route pipe replaced it. Pipes should leave custom parameters ' +
            "(metadata.type 'custom') they do not know alone.",
        );
      }
      return hidden.executor.run(hidden, this, wrapped.handler!, call);
    },
  );
  wrapped.handler = descriptor.value as object;
  UseFilters(IdempotencyProblemFilter)(target, key, descriptor);
  markIdempotentHandler(wrapped.handler);
}
