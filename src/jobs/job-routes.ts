import { applyDecorators, Res, SetMetadata, Type, UseInterceptors } from '@nestjs/common';
import type { NestInterceptor } from '@nestjs/common';
import { GUARDS_METADATA } from '@nestjs/common/constants';
import type { ControllerMethods } from '../common/controller-methods';
import { SseHandlerResult } from '../sse/sse-route-options';
import { SSE_JOB_METADATA } from './sse-job.options';

/** The `@SseJob()` start routes among this application's controllers, as `Class.method`. */
export function findJobRoutes(methods: ControllerMethods): string[] {
  return methods
    .find((method) => ['start', 'chat'].includes(Reflect.getMetadata(SSE_JOB_METADATA, method)))
    .map(({ type, name }) => `${type.name}.${name}`);
}

/**
 * A route beside the decorated method `key` (a resume or cancel URL), answered by `interceptor`
 * alone: a method `<key>$<role>` of the controller, with `role` under `metadataKey`. The
 * method's guards are its guards too.
 */
export function addCompanionRoute(
  target: object,
  key: string | symbol,
  role: string,
  mapping: MethodDecorator,
  metadataKey: string,
  interceptor: Type<NestInterceptor>,
): void {
  const name = `${String(key)}$${role}`;
  // Never called: the interceptor answers these requests itself.
  const handler = function (this: unknown) {
    return new SseHandlerResult(undefined);
  };
  Object.defineProperty(handler, 'name', { value: name });
  const descriptor: PropertyDescriptor = { value: handler, writable: true, configurable: true };
  Object.defineProperty(target, name, descriptor);
  // The response as a parameter: Nest leaves it to the interceptor (a stream, 204, 404…).
  Res()(target, name, 0);
  applyDecorators(mapping, SetMetadata(metadataKey, role), UseInterceptors(interceptor))(
    target,
    name,
    descriptor,
  );
  Object.defineProperty(target, name, descriptor);
  // Decorators above the route's own run after it: the method's guards are copied once the
  // class is defined (a microtask later, long before Nest reads routes at bootstrap).
  queueMicrotask(() => {
    const guards: unknown[] =
      Reflect.getMetadata(GUARDS_METADATA, (target as Record<string | symbol, object>)[key]) ?? [];
    if (guards.length > 0) Reflect.defineMetadata(GUARDS_METADATA, guards, handler);
  });
}
