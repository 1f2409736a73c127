import {
  applyDecorators,
  RequestMapping,
  RequestMethod,
  Res,
  SetMetadata,
  UseInterceptors,
} from '@nestjs/common';
import { wrapWithHiddenArgument } from '../common/hidden-argument';
import { SSE_ROUTE_METADATA, SseHandlerResult, SseRouteOptions } from './sse-route-options';
import { SseInterceptor } from './sse.interceptor';

/**
 * Declares a Server-Sent Events route (GET, or `options.method`). Use this instead of Nest's `@Sse`:
 *
 * ```ts
 * @Sse('orders/stream', { topic: 'orders' })                        // served from the hub
 * @Sse(':id/stream', { topic: (req) => `orders:${req.params.id}` }) // per-request topic(s)
 * @Sse('ticks') ticks() { return interval(1000).pipe(map((n) => ({ data: n }))); }
 * ```
 *
 * Guards, interceptors and pipes run before the stream opens, so their errors are ordinary HTTP
 * responses. Interceptors see one `undefined` value as soon as the stream is open (not each
 * event), so nothing of the request pipeline is held for the life of the stream.
 */
export function Sse(path?: string | string[], options: SseRouteOptions = {}): MethodDecorator {
  return (target: object, key: string | symbol, descriptor: PropertyDescriptor) => {
    if (typeof descriptor.value !== 'function') {
      throw new TypeError(`@Sse() can only decorate methods (${String(key)})`);
    }
    // The response is injected as a hidden extra argument, which tells Nest the route writes its
    // own response; the handler's result is boxed so Nest does not flatten a returned Observable.
    wrapWithHiddenArgument(target, key, descriptor, Res(), (_response, call) =>
      SseHandlerResult.of(call),
    );
    applyDecorators(
      RequestMapping({ path, method: RequestMethod[options.method ?? 'GET'] }),
      SetMetadata(SSE_ROUTE_METADATA, { ...options }),
      UseInterceptors(SseInterceptor),
    )(target, key, descriptor);
    return descriptor;
  };
}
