import {
  CanActivate,
  ExecutionContext,
  Inject,
  Injectable,
  UnauthorizedException,
} from '@nestjs/common';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Short-lived stream tickets: a browser's EventSource cannot send an Authorization header, so the
 * page first asks an authenticated route for a ticket, then opens the stream with it in the query
 * string. The ticket is signed (HMAC-SHA256), names its user and the one stream path it opens,
 * and expires within a minute; StreamTicketGuard checks it and removes it from the request's URL
 * before anything later (access logs, tracing, error reports) can record it. See
 * docs/authentication.md.
 */
export const STREAM_TICKET_SECRET = Symbol('STREAM_TICKET_SECRET');

export interface StreamTicketClaims {
  /** The user the stream is for. */
  sub: string;
  /** The stream path the ticket opens (no query). */
  path: string;
  /** Expiry, ms since the epoch. */
  exp: number;
}

@Injectable()
export class StreamTickets {
  constructor(@Inject(STREAM_TICKET_SECRET) private readonly secret: Buffer) {}

  /** A ticket for `sub` to open `path` during `ttlMs`. */
  issue(sub: string, path: string, ttlMs = 60_000): string {
    const claims: StreamTicketClaims & { n: string } = {
      sub,
      path,
      exp: Date.now() + ttlMs,
      n: randomBytes(8).toString('base64url'),
    };
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${body}.${this.sign(body)}`;
  }

  /** The ticket's claims if it is genuine, unexpired and for `path`; undefined otherwise. */
  verify(ticket: string, path: string): StreamTicketClaims | undefined {
    const [body, signature, extra] = ticket.split('.');
    if (!body || !signature || extra !== undefined) return undefined;
    const expected = Buffer.from(this.sign(body));
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let claims: StreamTicketClaims;
    try {
      claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    if (typeof claims.exp !== 'number' || claims.exp <= Date.now()) return undefined;
    if (claims.path !== path || typeof claims.sub !== 'string') return undefined;
    return claims;
  }

  private sign(body: string): string {
    return createHmac('sha256', this.secret).update(body).digest('base64url');
  }
}

/** What the guard and your handlers see of the request (Express and Fastify alike). */
interface TicketedRequest {
  url: string;
  originalUrl?: string;
  raw?: { url?: string };
  query?: Record<string, unknown>;
  user?: { id: string };
}

/**
 * Opens a stream for the user a valid `?ticket=` names (as `request.user`), else 401 — and in
 * both cases takes the ticket out of the URL first.
 */
@Injectable()
export class StreamTicketGuard implements CanActivate {
  constructor(private readonly tickets: StreamTickets) {}

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<TicketedRequest>();
    const url = new URL(request.originalUrl ?? request.url, 'http://localhost');
    const ticket = url.searchParams.get('ticket');
    scrub(request, url);
    const claims = ticket ? this.tickets.verify(ticket, url.pathname) : undefined;
    if (!claims) throw new UnauthorizedException('a valid stream ticket is required');
    request.user = { id: claims.sub };
    return true;
  }
}

/**
 * Rewrites the URL the request carries without its ticket: loggers and instrumentations read it
 * when the response ends. Express: `url` and `originalUrl` of the request (which is Node's own).
 * Fastify: Node's request is `raw`, and Fastify's `url`/`originalUrl` are getters over it.
 */
function scrub(request: TicketedRequest, url: URL): void {
  url.searchParams.delete('ticket');
  const clean = url.pathname + url.search;
  if (request.raw) {
    request.raw.url = clean;
  } else {
    request.url = clean;
    if (request.originalUrl !== undefined) request.originalUrl = clean;
  }
  if (request.query && 'ticket' in request.query) delete request.query.ticket;
}
