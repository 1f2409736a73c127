import * as http from 'node:http';
import { performance } from 'node:perf_hooks';

export const now = (): number => performance.timeOrigin + performance.now();

/**
 * Minimal SSE reader for load tests: counts events and, when `onLatency` is given, reads the
 * publish time `"t":<ms>` from each event's data and reports now - t.
 */
export function openStream(
  port: number,
  path: string,
  onEvent: () => void,
  onLatency?: (ms: number) => void,
): Promise<http.ClientRequest> {
  return new Promise((resolve, reject) => {
    const req = http.get({
      host: '127.0.0.1',
      port,
      path,
      agent: false,
      headers: { accept: 'text/event-stream' },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const received = now();
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!frame.includes('data:')) continue;
          onEvent();
          if (onLatency) {
            // Up to the next field or the end: jsonb (the outbox) puts "t" first, JSON.stringify last.
            const at = frame.indexOf('"t":');
            if (at >= 0) {
              const comma = frame.indexOf(',', at);
              const close = frame.indexOf('}', at);
              const end = comma >= 0 && comma < close ? comma : close;
              onLatency(received - Number(frame.slice(at + 4, end)));
            }
          }
        }
      });
      resolve(req);
    });
  });
}

export const percentile = (sorted: number[], p: number): number =>
  sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

export const round = (n: number): number => Math.round(n * 10) / 10;

export function summarize(latencies: number[]) {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    samples: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1] ?? NaN),
  };
}
