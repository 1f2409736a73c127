import { ResumeAdmission } from '../../src/sse/resume-admission';

describe('ResumeAdmission (pure, a fake clock)', () => {
  it('takes a second’s worth at once, then the rate; the refused are spread over the backlog', () => {
    let now = 0;
    const admission = new ResumeAdmission(
      100,
      () => now,
      () => 1,
    );
    const first = Array.from({ length: 300 }, () => admission.take());
    expect(first.filter((r) => r.admitted)).toHaveLength(100);
    const waits = first.flatMap((r) => (r.admitted ? [] : [r.retryAfterMs]));
    // The 200 refused are sent back over the 2 s the backlog takes at 100/s (random() = 1 here).
    expect(waits[0]).toBe(1010);
    expect(waits[199]).toBe(3000);
    expect(waits).toEqual([...waits].sort((a, b) => a - b));

    now = 500; // half a second: 50 more
    const later = Array.from({ length: 60 }, () => admission.take());
    expect(later.filter((r) => r.admitted)).toHaveLength(50);
  });

  it('does not bound anything at rate 0', () => {
    const admission = new ResumeAdmission(0);
    expect(Array.from({ length: 10_000 }, () => admission.take()).every((r) => r.admitted)).toBe(
      true,
    );
  });

  it('forgets the backlog as time passes at the rate', () => {
    let now = 0;
    const admission = new ResumeAdmission(
      10,
      () => now,
      () => 1,
    );
    for (let i = 0; i < 30; i++) admission.take();
    now = 60_000;
    const result = admission.take();
    expect(result.admitted).toBe(true);
  });
});
