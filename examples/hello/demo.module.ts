/**
 * The demo behind `npm start`: a clock topic, a chat topic fed by POST /messages, and a page that
 * subscribes with the browser's EventSource. Run several tabs, post messages, stop and restart
 * the server and watch the page reconnect on its own.
 */
import {
  BadRequestException,
  Body,
  Controller,
  Get,
  Header,
  Injectable,
  Module,
  OnApplicationShutdown,
  OnModuleInit,
  Post,
} from '@nestjs/common';
import { Sse, SseConnectionRegistry, SseHub, SseModule } from '../../src';
import { PAGE } from './page';

@Injectable()
class Clock implements OnModuleInit, OnApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private tick = 0;
  constructor(private readonly hub: SseHub) {}

  onModuleInit() {
    this.timer = setInterval(() => {
      this.tick++;
      this.hub.publish('clock', {
        id: `clock-${this.tick}`,
        type: 'tick',
        data: { now: new Date().toISOString() },
      });
    }, 1000);
  }

  onApplicationShutdown() {
    clearInterval(this.timer);
  }
}

@Controller()
class DemoController {
  private messageId = 0;
  constructor(
    private readonly hub: SseHub,
    private readonly registry: SseConnectionRegistry,
  ) {}

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  page() {
    return PAGE;
  }

  @Sse('stream', { topic: ['clock', 'chat'] })
  stream() {}

  @Post('messages')
  post(@Body() body: { text?: unknown }) {
    if (typeof body?.text !== 'string' || body.text.trim() === '' || body.text.length > 500) {
      throw new BadRequestException('text must be a non-empty string of at most 500 characters');
    }
    const id = `msg-${++this.messageId}`;
    const reached = this.hub.publish('chat', { id, type: 'message', data: { text: body.text } });
    return { id, reached };
  }

  @Get('stats')
  stats() {
    return this.registry.stats;
  }
}

@Module({
  imports: [
    SseModule.forRoot({ sse: { heartbeatMs: 15_000, retryMs: 2_000, maxConnections: 1_000 } }),
  ],
  controllers: [DemoController],
  providers: [Clock],
})
export class DemoModule {}
