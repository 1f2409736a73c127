/**
 * The "generate" demo (`npm run start:generate`, needs Redis): POST a prompt, a fake model
 * streams tokens; reload the page mid-generation and it resumes where it was — on any instance —
 * without a second generation. See docs/jobs.md. `/chat`: the same with the AI SDK's own client
 * (`@SseChat()`, docs/ai-sdk.md).
 */
import {
  BadRequestException,
  Body,
  Controller,
  DynamicModule,
  Get,
  Header,
  Module,
} from '@nestjs/common';
import { map } from 'rxjs';
import { Idempotent, SseJob, SseJobSignal, SseModule } from '../../src';
import { FakeModel } from './fake-model';
import { PAGE } from './page';
import { ChatController, ChatStore } from './chat';

@Controller()
class GenerateController {
  constructor(private readonly model: FakeModel) {}

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  page() {
    return PAGE;
  }

  /** A retried POST (same Idempotency-Key) attaches to the generation it started. */
  @Idempotent()
  @SseJob('generate')
  generate(@Body() body: { prompt?: unknown }, @SseJobSignal() signal: AbortSignal) {
    const prompt = body?.prompt;
    if (typeof prompt !== 'string' || prompt.trim() === '' || prompt.length > 2_000) {
      throw new BadRequestException('prompt must be a non-empty string of at most 2000 characters');
    }
    return this.model
      .generate(prompt, signal)
      .pipe(map((token) => ({ type: 'token', data: token })));
  }
}

export interface GenerateDemoOptions {
  redisUrl: string;
  keyPrefix?: string;
}

@Module({})
export class GenerateModule {
  static forRoot(options: GenerateDemoOptions): DynamicModule {
    return {
      module: GenerateModule,
      imports: [
        SseModule.forRoot({
          sse: { heartbeatMs: 15_000, retryMs: 1_000 },
          redis: { url: options.redisUrl, keyPrefix: options.keyPrefix ?? 'generate-demo:' },
          jobs: { timeoutMs: 5 * 60_000, retentionMs: 15 * 60_000 },
        }),
      ],
      controllers: [GenerateController, ChatController],
      providers: [FakeModel, ChatStore],
    };
  }
}
