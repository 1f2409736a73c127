import { Injectable } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';

/** A method of one of this application's controllers. */
export interface ControllerMethod {
  /** The controller class (a subclass, when the method is declared on a base class). */
  type: { name: string };
  name: string;
  method: object;
}

/**
 * The methods of this application's controllers that carry some metadata, found with Nest's own
 * discovery: base classes' methods included (a route declared on a base controller is a route of
 * each controller that extends it), each once per controller class. One scan for every part of
 * the module that needs one (`@Idempotent()` handlers, `@SseJob()` routes).
 */
@Injectable()
export class ControllerMethods {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
  ) {}

  find(test: (method: object) => boolean): ControllerMethod[] {
    const found: ControllerMethod[] = [];
    for (const { metatype } of this.discovery.getControllers()) {
      const prototype = (metatype as { prototype?: Record<string, unknown> } | null)?.prototype;
      if (!metatype || !prototype) continue;
      for (const name of this.scanner.getAllMethodNames(prototype)) {
        const method = prototype[name];
        if (typeof method === 'function' && test(method))
          found.push({ type: metatype as { name: string }, name, method });
      }
    }
    return found;
  }
}
