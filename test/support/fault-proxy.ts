import * as net from 'node:net';
import { AddressInfo } from 'node:net';

/**
 * A TCP proxy on loopback that the test controls, standing for the network path between an app
 * and its database. `freeze()` makes every established flow go silent in both directions —
 * nothing is forwarded, nothing is closed: no FIN, no RST, as after a failover or a NAT reset —
 * while new connections still pass. Only the frozen flows' sockets stay open, until `close()`.
 */
export class FaultProxy {
  private readonly flows = new Set<{ client: net.Socket; upstream: net.Socket }>();
  /** Connections accepted so far (a reconnect after a freeze shows here). */
  accepted = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(targetUrl: string): Promise<FaultProxy> {
    const target = new URL(targetUrl);
    const server = net.createServer();
    const proxy: FaultProxy = await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () =>
        resolve(new FaultProxy(server, (server.address() as AddressInfo).port)),
      );
    });
    server.on('connection', (client) => proxy.accept(client, target));
    return proxy;
  }

  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string {
    const parsed = new URL(url);
    parsed.hostname = '127.0.0.1';
    parsed.port = String(this.port);
    return parsed.toString();
  }

  /** Established flows, open right now. */
  get openFlows(): number {
    return this.flows.size;
  }

  /** Every flow open now stops forwarding, silently and for good; later connections pass. */
  freeze(): number {
    for (const flow of this.flows) {
      flow.client.unpipe(flow.upstream);
      flow.upstream.unpipe(flow.client);
      flow.client.pause();
      flow.upstream.pause();
    }
    const frozen = this.flows.size;
    // Frozen flows are no longer the proxy's to forward; they are only held open.
    this.frozen.push(...this.flows);
    this.flows.clear();
    return frozen;
  }

  private readonly frozen: Array<{ client: net.Socket; upstream: net.Socket }> = [];

  async close(): Promise<void> {
    for (const { client, upstream } of [...this.flows, ...this.frozen]) {
      client.destroy();
      upstream.destroy();
    }
    this.flows.clear();
    this.frozen.length = 0;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket, target: URL): void {
    this.accepted++;
    const upstream = net.connect({
      host: target.hostname,
      port: Number(target.port),
    });
    const flow = { client, upstream };
    this.flows.add(flow);
    const end = () => {
      this.flows.delete(flow);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
