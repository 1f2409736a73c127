import { applyDecorators, Req, SetMetadata, UseFilters, UseInterceptors } from '@nestjs/common';
import { IdempotencyProblemFilter } from './idempotency-problem';
import { METHOD_METADATA } from '@nestjs/common/constants';
import { wrapWithHiddenArgument } from '../common/hidden-argument';
import { IdempotencyInterceptor } from './idempotency.interceptor';
import { HANDLER_ENTERED, IDEMPOTENT_METADATA, IdempotentOptions } from './idempotent.options';

/**
 * Makes a route (or every non-GET route of a controller) idempotent by `Idempotency-Key`.
 * GET, HEAD and OPTIONS always pass through. Options override the module's `idempotency` ones.
 */
export function Idempotent(options: IdempotentOptions = {}): MethodDecorator & ClassDecorator {
  return ((target: object, key?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (descriptor && key !== undefined) {
      markHandlerEntry(target, key, descriptor);
      applyDecorators(
        SetMetadata(IDEMPOTENT_METADATA, options),
        UseInterceptors(IdempotencyInterceptor),
        UseFilters(IdempotencyProblemFilter),
      )(target, key, descriptor);
      return descriptor;
    }
    const prototype = (target as { prototype: object }).prototype;
    for (const name of Object.getOwnPropertyNames(prototype)) {
      const method = Object.getOwnPropertyDescriptor(prototype, name);
      if (name === 'constructor' || typeof method?.value !== 'function') continue;
      // Only route handlers, and only those without their own @Idempotent().
      if (Reflect.getMetadata(METHOD_METADATA, method.value) === undefined) continue;
      if (Reflect.getMetadata(IDEMPOTENT_METADATA, method.value) !== undefined) continue;
      markHandlerEntry(prototype, name, method);
      Object.defineProperty(prototype, name, method);
    }
    applyDecorators(
      SetMetadata(IDEMPOTENT_METADATA, options),
      UseInterceptors(IdempotencyInterceptor),
      UseFilters(IdempotencyProblemFilter),
    )(target as new (...args: never[]) => unknown);
  }) as MethodDecorator & ClassDecorator;
}

/** Pipes run before the handler's body: a request they reject must leave no record. */
function markHandlerEntry(
  target: object,
  key: string | symbol,
  descriptor: PropertyDescriptor,
): void {
  wrapWithHiddenArgument(
    target,
    key,
    descriptor,
    Req(),
    (request: Record<symbol, unknown>, call) => {
      request[HANDLER_ENTERED] = true;
      return call();
    },
  );
}
