import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';

/**
 * Wraps a route handler so it receives one extra, hidden argument (injected by a Nest parameter
 * decorator such as `Req()` or `Res()`), which `around` sees and the user's method never does.
 * `around` runs with the controller instance as `this`. Metadata set on the original function by
 * decorators applied earlier is carried over.
 */
export function wrapWithHiddenArgument(
  target: object,
  key: string | symbol,
  descriptor: PropertyDescriptor,
  inject: ParameterDecorator,
  around: (this: any, hidden: any, call: () => unknown) => unknown,
): void {
  const original = descriptor.value as (...args: unknown[]) => unknown;
  const index = hiddenArgumentIndex(target, key, original);
  const handler = function (this: unknown, ...args: unknown[]) {
    return around.call(this, args[index], () => original.apply(this, args.slice(0, index)));
  };
  Object.defineProperty(handler, 'name', { value: original.name });
  for (const metadataKey of Reflect.getOwnMetadataKeys(original)) {
    Reflect.defineMetadata(metadataKey, Reflect.getOwnMetadata(metadataKey, original), handler);
  }
  descriptor.value = handler;
  inject(target, key, index);
}

function hiddenArgumentIndex(
  target: object,
  key: string | symbol,
  method: (...args: never[]) => unknown,
): number {
  const paramTypes: unknown[] = Reflect.getMetadata('design:paramtypes', target, key) ?? [];
  const routeArgs: Record<string, { index: number }> =
    Reflect.getMetadata(ROUTE_ARGS_METADATA, target.constructor, key) ?? {};
  const lastDecorated = Math.max(-1, ...Object.values(routeArgs).map((arg) => arg.index));
  return Math.max(method.length, paramTypes.length, lastDecorated + 1);
}
