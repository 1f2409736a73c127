import type { Type } from '@nestjs/common';
import type { ModulesContainer } from '@nestjs/core';

/**
 * Each `SseModule.forRoot*()` call is a module of its own: its own options, streams, relay,
 * connection pools and routes. A second call (in a feature module, say) used to be accepted, one
 * set of options silently winning where a provider is resolved, and the other module's relay,
 * pools and `/health` running beside it. So start-up fails, naming who imports it.
 */
export function assertOneSseModule(modules: ModulesContainer, sseModule: Type<unknown>): void {
  const instances = [...modules.values()].filter((module) => module.metatype === sseModule);
  if (instances.length <= 1) return;
  // What each module declares (its resolved imports also hold every global module).
  const importers = [...modules.values()]
    .filter((module) => {
      const declared: unknown[] = Reflect.getMetadata('imports', module.metatype ?? {}) ?? [];
      return declared.some(
        (item) =>
          item === sseModule || (item as { module?: unknown } | undefined)?.module === sseModule,
      );
    })
    .map((module) => module.name);
  throw new Error(
    `SseModule.forRoot() is imported ${instances.length} times in this application` +
      (importers.length > 0 ? ` (by ${importers.join(', ')})` : '') +
      '; each would run with its own options, streams, connections and routes. Import it ' +
      'once, in the root module: it is global by default, so feature modules need no import ' +
      '(with isGlobal: false, re-export it from one module that the others import).',
  );
}
