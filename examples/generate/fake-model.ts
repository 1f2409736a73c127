import { Injectable } from '@nestjs/common';
import { Observable } from 'rxjs';

/** What the demo's "model" says for a prompt: a fixed text, so a test knows every token. */
export function answerTo(prompt: string, tokens = 120): string[] {
  const words =
    `You asked: "${prompt}". Here is a long answer, streamed one token at a time the way a ` +
    'language model would, so that a reload, a dropped connection or a second tab can pick ' +
    'it up where it was, on any instance, without paying for the generation twice.';
  const list = words.split(' ');
  return Array.from({ length: tokens }, (_, i) => `${list[i % list.length]} `);
}

/**
 * A fake language model: no network, tokens at a realistic pace (`tokenMs` apart, ±50 %
 * jitter). It stops when the job's signal fires (cancel, timeout, shutdown).
 */
@Injectable()
export class FakeModel {
  /** Generations started, for the demo's tests (a retry must not start a second one). */
  generations = 0;
  tokenMs = Number(process.env.TOKEN_MS ?? 40);
  tokens = Number(process.env.TOKENS ?? 120);

  generate(prompt: string, signal: AbortSignal): Observable<string> {
    this.generations++;
    const words = answerTo(prompt, this.tokens);
    return new Observable<string>((subscriber) => {
      let i = 0;
      let timer: NodeJS.Timeout;
      const next = () => {
        if (signal.aborted) return;
        if (i === words.length) return subscriber.complete();
        subscriber.next(words[i++]);
        timer = setTimeout(next, this.tokenMs * (0.5 + Math.random()));
      };
      timer = setTimeout(next, this.tokenMs);
      return () => clearTimeout(timer);
    });
  }
}
