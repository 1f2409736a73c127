import { SseLogger } from '../observability/sse-logger';
import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  OnApplicationBootstrap,
  OnApplicationShutdown,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { OutboxRelay } from '../outbox/read/outbox-relay';
import { SseConnectionRegistry } from '../sse/sse-connection-registry';
import { SseJobs } from '../jobs/sse-jobs';

/**
 * The module's shutdown, in order (docs/operations.md#shutdown). Nest runs every provider's
 * `beforeApplicationShutdown` at once, so the order lives here rather than in each part:
 *
 * 1. Readiness turns 503 (`draining`). On a signal, that lasts `shutdown.drainMs` before anything
 *    is refused: load balancers notice and stop sending (Kubernetes removes the endpoint while
 *    the SIGTERM is already on its way, so refusing at once would drop requests).
 * 2. New streams are refused and open ones ended (clients resume elsewhere by id); the relay stops.
 * 3. Connections that never sent a request are closed (see {@link unused}), and Nest closes the
 *    HTTP server, which waits for requests in flight. After `shutdown.graceMs`, every socket
 *    still open is closed — silent, half-sent requests — so `app.close()` never waits on a client.
 */
@Injectable()
export class SseShutdown
  implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown
{
  private forceClose?: NodeJS.Timeout;
  /**
   * Connections that have not sent a request (yet). Clients open them ahead of need — Node's
   * fetch (undici), and so the `eventsource` package, keeps a second socket beside a stream and
   * closes it seconds after the stream ends — and `server.close()` waits for them, as it waits
   * for every socket that is not an idle keep-alive one: `app.close()` took 3 s on Express and
   * `shutdown.graceMs` (10 s) on Fastify after one browser-like client had left. Nothing is in
   * flight on them, so shutdown closes them at once.
   */
  private readonly unused = new Set<Socket>();

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly registry: SseConnectionRegistry,
    private readonly relay: OutboxRelay,
    private readonly adapterHost: HttpAdapterHost,
    private readonly jobs: SseJobs,
    private readonly logger: SseLogger,
  ) {}

  onApplicationBootstrap(): void {
    const server = this.httpServer();
    if (!server || typeof server.on !== 'function') return;
    // On HTTPS, requests arrive on the TLS socket, not on the TCP one 'connection' reports.
    const event = server instanceof TlsServer ? 'secureConnection' : 'connection';
    server.on(event, (socket: Socket) => {
      this.unused.add(socket);
      socket.once('close', () => this.unused.delete(socket));
    });
    const used = (request: { socket: Socket }) => this.unused.delete(request.socket);
    server.on('request', used);
    server.on('upgrade', used);
  }

  async beforeApplicationShutdown(signal?: string): Promise<void> {
    const { drainMs, graceMs } = this.options.shutdown;
    this.registry.beginDrain();
    // Jobs cannot move to another process: they get the drain window to finish (no new one
    // starts), and then end with `event: error` in their logs before their streams close.
    const jobs = this.jobs.drain(signal ? drainMs : 0);
    if (signal && drainMs > 0) {
      this.logger.report(
        'shutdown.draining',
        `${signal}: readiness is 503; draining for ${drainMs} ms before closing` +
          // Every Ctrl+C of a dev server waits it too; say how not to.
          (process.env.NODE_ENV === 'production'
            ? ''
            : ' (shutdown.drainMs: 0 stops at once where no load balancer needs the time)'),
      );
      await new Promise((resolve) => setTimeout(resolve, drainMs));
    }
    await jobs;
    this.registry.shutdown();
    await this.relay.stop();

    for (const socket of this.unused) socket.destroy();
    this.unused.clear();
    const server = this.httpServer();
    if (!server) return;
    this.forceClose = setTimeout(() => {
      this.logger.report(
        'shutdown.grace-exceeded',
        `Requests still open ${graceMs} ms into shutdown (shutdown.graceMs): closing every remaining connection`,
      );
      server.closeAllConnections?.();
    }, graceMs);
    // Never the reason the process stays alive: the sockets it closes are.
    this.forceClose.unref();
  }

  onApplicationShutdown(): void {
    clearTimeout(this.forceClose);
  }

  private httpServer(): Server | undefined {
    try {
      return this.adapterHost.httpAdapter?.getHttpServer?.() as Server | undefined;
    } catch {
      return undefined; // an application context without HTTP
    }
  }
}
