import { Inject, Injectable, OnApplicationBootstrap, RequestMethod, Type } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { HttpAdapterHost } from '@nestjs/core';
import { ControllerMethods } from '../common/controller-methods';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import { SSE_ROUTES_CONTROLLER } from './sse-routes.controller';

/** `health.path` and `metrics.path` as options name them, with the routes they give. */
interface OwnRoute {
  option: 'health.path' | 'metrics.path';
  path: string;
}

/**
 * Most Terminus apps already serve `/health`. When this module's route has the same path, Express
 * maps both and the first registered answers — the module's checks and its drain-503 vanish
 * without a word, or the app's do — and Fastify refuses with its own "already declared". Either
 * way the fix is the app's choice, so start-up fails with an error that names the route, the
 * controller that also maps it, and the two ways out.
 *
 * What is compared is what the platform registered (global prefix, versioning, `RouterModule`
 * and prefix exclusions all applied), so a route is only reported when both really have one
 * path: Express's router after Nest registered the routes, Fastify's `onRoute` as each is added
 * (before Fastify's own duplicate check throws).
 */
@Injectable()
export class SseRouteClashes implements OnApplicationBootstrap {
  private readonly ownRoutes: OwnRoute[];
  /** Fastify: every GET path registered so far (lower case, no trailing slash). */
  private readonly registered = new Set<string>();

  constructor(
    @Inject(SSE_MODULE_OPTIONS) options: ResolvedSseModuleOptions,
    @Inject(SSE_ROUTES_CONTROLLER) private readonly own: Type<unknown>,
    private readonly adapterHost: HttpAdapterHost,
    private readonly controllers: ControllerMethods,
  ) {
    const { health, metrics } = options;
    this.ownRoutes = [
      ...(health.path === false
        ? []
        : [
            { option: 'health.path' as const, path: health.path },
            { option: 'health.path' as const, path: `${health.path}/live` },
          ]),
      ...(metrics.path === false ? [] : [{ option: 'metrics.path' as const, path: metrics.path }]),
    ];
  }

  /**
   * Called from `SseModule.configure()`: after the app has its platform (a testing module's
   * providers exist before it does), before Nest registers the routes.
   */
  watchRegistrations(): void {
    const adapter = this.adapterHost.httpAdapter;
    if (adapter?.getType() !== 'fastify' || this.ownRoutes.length === 0) return;
    const fastify = adapter.getInstance<{
      addHook(
        name: 'onRoute',
        hook: (route: { method: string | string[]; url: string }) => void,
      ): void;
    }>();
    fastify.addHook('onRoute', (route) => {
      if (![route.method].flat().includes('GET')) return;
      const path = normalize(route.url);
      if (this.registered.has(path)) this.check([path]);
      this.registered.add(path);
    });
  }

  onApplicationBootstrap(): void {
    const adapter = this.adapterHost.httpAdapter;
    if (adapter?.getType() !== 'express' || this.ownRoutes.length === 0) return;
    const app = adapter.getInstance<{ router?: ExpressRouter; _router?: ExpressRouter }>();
    const layers = (app.router ?? app._router)?.stack ?? [];
    const seen = new Set<string>();
    const twice: string[] = [];
    for (const layer of layers) {
      if (!layer.route?.methods?.get || typeof layer.route.path !== 'string') continue;
      const path = normalize(layer.route.path);
      if (seen.has(path)) twice.push(path);
      seen.add(path);
    }
    this.check(twice);
  }

  /** Throws when one of `paths` (each registered twice) is one of this module's routes. */
  private check(paths: string[]): void {
    for (const path of paths) {
      const own = this.ownRoutes.find((route) => path.endsWith(`/${route.path.toLowerCase()}`));
      if (own) throw new SseRouteClashError(path, own, this.othersAt(own.path));
    }
  }

  /** The app's controller methods mapped to `path` (before any prefix), for the message. */
  private othersAt(path: string): string[] {
    const wanted = normalize(path);
    return this.controllers
      .find((method) => Reflect.getMetadata(METHOD_METADATA, method) !== undefined)
      .filter(({ type, method }) => {
        if (type === this.own) return false;
        const verb = Reflect.getMetadata(METHOD_METADATA, method) as RequestMethod;
        if (verb !== RequestMethod.GET && verb !== RequestMethod.ALL) return false;
        const prefixes = paths(Reflect.getMetadata(PATH_METADATA, type));
        const routes = paths(Reflect.getMetadata(PATH_METADATA, method));
        return prefixes.some((prefix) =>
          routes.some((route) => normalize(`${prefix}/${route}`).endsWith(wanted)),
        );
      })
      .map(({ type, name }) => `${type.name}.${name}`);
  }
}

/** Thrown at start-up when the app maps one of the module's routes itself. */
export class SseRouteClashError extends Error {
  override readonly name = 'SseRouteClashError';
  constructor(path: string, own: OwnRoute, others: string[]) {
    const by = others.length > 0 ? ` (${others.join(', ')})` : '';
    const fix =
      own.option === 'health.path'
        ? `set health.path to a path of its own (e.g. 'sse-health'), or health.path: false and ` +
          `add SseHealthIndicators' checks to your health controller (docs/operations.md)`
        : `set metrics.path to a path of its own, or metrics.path: false and serve ` +
          `SseMetrics.registry from your own route`;
    super(
      `SseModule: GET ${path} is mapped twice — by this module (${own.option}: ` +
        `'${own.path}') and by your app${by}; only one of them would answer. To keep both, ${fix}.`,
    );
  }
}

interface ExpressRouter {
  stack?: Array<{ route?: { path?: unknown; methods?: Record<string, boolean> } }>;
}

function paths(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  return [typeof value === 'string' ? value : ''];
}

function normalize(path: string): string {
  const trimmed = path
    .toLowerCase()
    .replace(/\/{2,}/g, '/')
    .replace(/\/+$/, '');
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}
