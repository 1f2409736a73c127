import { CanActivate, Controller, ExecutionContext, Post, Req, UseGuards } from '@nestjs/common';
import { Sse } from '../../src';
import { StreamTicketGuard, StreamTickets } from './stream-tickets';

/** Your app's own authentication for ordinary requests (here: a bearer token naming the user). */
export class BearerGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest();
    const match = /^Bearer (\w+)$/.exec(request.headers.authorization ?? '');
    if (!match) return false;
    request.user = { id: match[1] };
    return true;
  }
}

@Controller()
export class AuthExampleController {
  constructor(private readonly tickets: StreamTickets) {}

  /** Step 1, with the usual authentication: a ticket for the user's own stream. */
  @Post('stream-tickets')
  @UseGuards(BearerGuard)
  ticket(@Req() request: { user: { id: string } }) {
    const path = `/users/${request.user.id}/stream`;
    return { url: `${path}?ticket=${this.tickets.issue(request.user.id, path)}` };
  }

  /** Step 2: `new EventSource(url)`; the ticket opens this stream and nothing else. */
  // The guard checked that the ticket was issued for this very path, so :id is its user.
  @Sse('users/:id/stream', { topic: (request) => `user:${request.params.id}` })
  @UseGuards(StreamTicketGuard)
  stream() {}
}
