import { Semaphore } from '../../src/common/semaphore';

describe('Semaphore', () => {
  it('runs at most `limit` tasks at once, the rest in arrival order, and frees slots on failure', async () => {
    const semaphore = new Semaphore(2);
    const started: number[] = [];
    const gates = Array.from({ length: 5 }, () => {
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      return { gate, open };
    });
    const runs = gates.map(({ gate }, i) =>
      semaphore.run(async () => {
        started.push(i);
        await gate;
        if (i === 1) throw new Error('task 1 failed');
        return i;
      }),
    );
    await Promise.resolve();
    expect(started).toEqual([0, 1]);
    expect([semaphore.running, semaphore.queued]).toEqual([2, 3]);
    gates[1].open();
    await expect(runs[1]).rejects.toThrow('task 1 failed');
    expect(started).toEqual([0, 1, 2]);
    gates[0].open();
    await runs[0];
    expect(started).toEqual([0, 1, 2, 3]);
    gates.forEach((g) => g.open());
    expect(await Promise.all([runs[2], runs[3], runs[4]])).toEqual([2, 3, 4]);
    expect([semaphore.running, semaphore.queued]).toEqual([0, 0]);
  });

  it('holds a slot from acquire() until its release, and a second release frees nothing more', async () => {
    const semaphore = new Semaphore(1);
    const release = await semaphore.acquire();
    let second = false;
    const waiting = semaphore.acquire().then((r) => ((second = true), r));
    await Promise.resolve();
    expect([semaphore.running, semaphore.queued, second]).toEqual([1, 1, false]);
    release();
    const releaseSecond = await waiting;
    release();
    let third = false;
    const thirdWaiting = semaphore.acquire().then((r) => ((third = true), r));
    await Promise.resolve();
    expect([semaphore.running, semaphore.queued, third]).toEqual([1, 1, false]);
    releaseSecond();
    (await thirdWaiting)();
    expect([semaphore.running, semaphore.queued]).toEqual([0, 0]);
  });

  it('refuses a limit below one', () => {
    expect(() => new Semaphore(0)).toThrow(RangeError);
  });
});
