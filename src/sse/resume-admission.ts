/**
 * How fast this instance takes streams back that resume (`Last-Event-ID`): when an instance
 * dies, all its clients come back to the others within their `retry:`, and a resume costs more
 * than a new stream (the request pipeline, then the events it missed). Unbounded, 15,000 at
 * once queue behind each other, and everything else the instance does (live events, health
 * checks) waits behind them. So resumes are taken at `rate` a second (a second's worth at once:
 * a tenth was measured slower), and the rest are told when to come back: spread over the time
 * the ones refused before them will take, so they return at about the rate they can be taken.
 * (The default, 2,500/s, is above what a 2-core instance took back in the storm benchmark,
 * ~2,000/s: it bounds a bigger storm, not this one.)
 */
export class ResumeAdmission {
  private tokens: number;
  private updatedAt: number;
  /** Refused clients not yet expected back: how far ahead the next refused one is sent. */
  private backlog = 0;
  private readonly burst: number;

  constructor(
    private readonly rate: number,
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {
    this.burst = rate;
    this.tokens = this.burst;
    this.updatedAt = now();
  }

  /** Admits one resume, or says in how many ms to come back. */
  take(): { admitted: true } | { admitted: false; retryAfterMs: number } {
    if (this.rate <= 0) return { admitted: true };
    const now = this.now();
    const elapsed = (now - this.updatedAt) / 1000;
    this.updatedAt = now;
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate);
    // The refused are expected back at the rate they are taken.
    this.backlog = Math.max(0, this.backlog - elapsed * this.rate);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return { admitted: true };
    }
    this.backlog += 1;
    const spreadMs = (this.backlog / this.rate) * 1000;
    return { admitted: false, retryAfterMs: Math.round(1000 + this.random() * spreadMs) };
  }
}
