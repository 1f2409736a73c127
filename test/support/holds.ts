/**
 * Holds executions at a point of the code under test until the test releases them, one hold per
 * execution, handed to the test in the order they arrive: `await holds.next()` resolves once an
 * execution waits in `await holds.arrive()`, with the function that lets it go on.
 */
export class Holds {
  private readonly waiting: Array<() => void> = [];
  private readonly takers: Array<(release: () => void) => void> = [];

  /** Resolves with the release of the next execution to arrive. */
  next(): Promise<() => void> {
    const release = this.waiting.shift();
    if (release) return Promise.resolve(release);
    return new Promise((resolve) => this.takers.push(resolve));
  }

  /** Called by the code under test: waits until the test releases it. */
  arrive(): Promise<void> {
    return new Promise<void>((release) => {
      const taker = this.takers.shift();
      if (taker) taker(release);
      else this.waiting.push(release);
    });
  }
}
