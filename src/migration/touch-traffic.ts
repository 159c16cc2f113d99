/**
 * Clients' first touches (their moves) in this process, as the sweeper sees them to give way
 * (touches first, docs/DESIGN.md): how many are in flight, when the last one ended, and a wait
 * for a gap between them.
 *
 * Why a gap and not just "none in flight": a client reading cold keys sends its next touch a
 * fraction of a millisecond after the previous one ends (the GET, the reply, its next request).
 * A step sent the moment the count reaches 0 lands in the source just before that next touch,
 * which then waits for the whole step: nearly every touch did, and its p50 tripled. A step sent
 * only after `gapMs` with no touch, or when the wait reaches its cap, meets few touches.
 */
export class TouchTraffic {
  /** Touches in flight now. */
  inFlight = 0;
  /** performance.now() when the last touch ended (-Infinity: none yet). */
  lastEnd = -Infinity;
  /** Whoever waits in quiet() (the sweepers of this process: a canary's can run beside another). */
  private readonly waiters = new Set<() => void>();

  /** A touch starts; `end` must be called once it settles. */
  start(): void {
    this.inFlight++;
  }

  readonly end = (): void => {
    if (--this.inFlight > 0) return;
    this.lastEnd = performance.now();
    for (const w of this.waiters) w();
  };

  /**
   * Resolves once no touch is in flight and none ended within `gapMs`, or after `maxMs` at most
   * (touches that keep coming must not stop the sweep). Event-driven: no polling while it waits.
   */
  async quiet(gapMs: number, maxMs: number): Promise<void> {
    const until = performance.now() + maxMs;
    for (;;) {
      const now = performance.now();
      if (now >= until) return;
      if (this.inFlight === 0 && now - this.lastEnd >= gapMs) return;
      const wake = this.inFlight > 0 ? until : Math.min(until, this.lastEnd + gapMs);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          this.waiters.delete(done);
          resolve();
        };
        const t = setTimeout(done, Math.max(0, wake - now));
        this.waiters.add(done);
      });
    }
  }
}
