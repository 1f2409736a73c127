// Heartbeat scheduling is pure timer logic: checked here with fake timers on a fake response.
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { resolveSseModuleOptions, SseConnectionRegistry } from '../../src';
import { SSE_HEARTBEAT } from '../../src/sse/sse-encoder';

class FakeResponse extends EventEmitter {
  writes: string[] = [];
  writableLength = 0;
  writableEnded = false;
  write(chunk: string) {
    this.writes.push(chunk);
    return true;
  }
  end() {
    this.writableEnded = true;
  }
  destroy() {}
}

describe('heartbeat scheduling', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  function open(heartbeatMs: number) {
    const registry = new SseConnectionRegistry(resolveSseModuleOptions({ sse: { heartbeatMs } }));
    const admission = registry.admit('client');
    if (!admission.admitted) throw new Error('not admitted');
    const response = new FakeResponse();
    const connection = registry.open(
      response as unknown as ServerResponse,
      'client',
      admission.slot,
    );
    return { registry, response, connection };
  }

  it('never lets a stream stay silent for longer than heartbeatMs', () => {
    const { response } = open(1000);
    jest.advanceTimersByTime(999);
    expect(response.writes).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(response.writes).toEqual([SSE_HEARTBEAT]);
    jest.advanceTimersByTime(1000);
    expect(response.writes).toEqual([SSE_HEARTBEAT, SSE_HEARTBEAT]);
  });

  it('sends no heartbeat while events keep the stream busy', () => {
    const { response, connection } = open(1000);
    for (let i = 0; i < 20; i++) {
      jest.advanceTimersByTime(400);
      connection.write(`data: ${i}\n\n`);
    }
    expect(response.writes.filter((w) => w === SSE_HEARTBEAT)).toEqual([]);
  });

  it('runs one shared timer only while streams are open', () => {
    const { registry, connection } = open(1000);
    expect(registry.stats.heartbeatTimer).toBe(true);
    expect(jest.getTimerCount()).toBe(1);
    connection.close('client');
    expect(registry.stats.heartbeatTimer).toBe(false);
    expect(jest.getTimerCount()).toBe(0);
    expect(registry.size).toBe(0);
  });
});
