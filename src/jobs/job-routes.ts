import type { ModulesContainer } from '@nestjs/core';
import { SSE_JOB_METADATA } from './sse-job.options';

/** The `@SseJob()` start routes among this application's controllers, as `Class.method`. */
export function findJobRoutes(modules: ModulesContainer): string[] {
  const found: string[] = [];
  for (const module of modules.values()) {
    for (const { metatype } of module.controllers.values()) {
      const proto = metatype?.prototype;
      if (!proto) continue;
      for (const name of Object.getOwnPropertyNames(proto)) {
        const method = Object.getOwnPropertyDescriptor(proto, name)?.value;
        if (
          typeof method === 'function' &&
          Reflect.getMetadata(SSE_JOB_METADATA, method) === 'start'
        )
          found.push(`${metatype.name}.${name}`);
      }
    }
  }
  return found;
}
