/**
 * `work`, or — if it takes longer than `ms` — what `onTimeout` returns (or throws). The timer
 * never outlives the race, so it cannot keep a process alive.
 */
export async function raceTimeout<T, F = never>(
  work: Promise<T>,
  ms: number,
  onTimeout: () => F,
): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<F>((resolve, reject) => {
        timer = setTimeout(() => {
          try {
            resolve(onTimeout());
          } catch (error) {
            reject(error);
          }
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
