import type { ControllerMethods } from '../common/controller-methods';
import { SSE_JOB_METADATA } from './sse-job.options';

/** The `@SseJob()` start routes among this application's controllers, as `Class.method`. */
export function findJobRoutes(methods: ControllerMethods): string[] {
  return methods
    .find((method) => Reflect.getMetadata(SSE_JOB_METADATA, method) === 'start')
    .map(({ type, name }) => `${type.name}.${name}`);
}
