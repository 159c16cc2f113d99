/**
 * The migration as a whole: the sweeper, the source watch, the drained state and progress
 * figures (keys remaining per db, rate, ETA) that status, metrics and the progress display read.
 */
import type { ControlPool } from '../upstream/control.js';
import type { Mover } from './mover.js';
import { SourceWatch, visibleKeyspace, type SourceIdentity } from './source-watch.js';
import { Sweeper, SWEEPER_DEFAULTS, type SweeperOptions } from './sweeper.js';

export type Phase = 'migrating' | 'drained';

/** Settings of the migration's background work. */
export interface MigrationOptions {
  sweep: boolean;
  /** Nothing to move (hold and drained phases): no sweeper, no source watch, drained from the start. */
  passThrough?: boolean;
  sweeper: Partial<SweeperOptions>;
  /** Why the sweeper starts paused (the fleet's pause); null or absent: it starts. */
  sweeperPaused?: string | null;
  /**
   * The migration paused the sweeper by itself (the source restarted): with phases, the pause is
   * stored for the fleet, so every process's sweeper waits for the operator's resume.
   */
  onPauseSweeper?: (reason: string) => void;
  watchIntervalMs: number;
  /** Keys move new -> old (reverse, a rollback): the source is the new server. */
  reverse?: boolean;
  /**
   * A canary's part (docs/DESIGN.md "Scope"): `scope`, the forward sweep of the scope's keys;
   * `return`, the sweep that brings keys that left the scope home. Its drained is that part's
   * only: the mover keeps consulting the source (it still holds keys outside the scope).
   */
  part?: { kind: 'scope' | 'return'; label: string } | null;
}

/** Drives and reports the migration; see the file comment. */
export class Migration {
  phase: Phase = 'migrating';
  readonly sweeper: Sweeper | null;
  readonly watch: SourceWatch | null;
  readonly startedAt = Date.now();
  drainedAt: number | null = null;
  /** Keys in the source when the proxy started. */
  initialKeys = 0;
  remainingPerDb: Record<number, number> = {};
  /** Keys moved per second (smoothed). */
  rate = 0;
  sourceRestarted: { at: number; before: SourceIdentity; after: SourceIdentity } | null = null;
  private warnedRefill = false;
  private lastMoved = 0;
  private lastAt = Date.now();
  private timer: NodeJS.Timeout | null = null;
  /**
   * In hold: keys on the old server per db, what a switch to migrate would move (null outside
   * hold). Read every watchIntervalMs by countWaiting.
   */
  waitingPerDb: Record<number, number> | null = null;
  private waitingTimer: NodeJS.Timeout | null = null;
  private readonly drainedListeners: Array<() => void> = [];

  constructor(
    private readonly source: ControlPool,
    readonly mover: Mover,
    private readonly opts: MigrationOptions,
    private readonly log: (line: string) => void,
  ) {
    if (opts.passThrough) {
      this.watch = null;
      this.sweeper = null;
      this.phase = 'drained';
      this.drainedAt = this.startedAt;
      mover.drained = true;
      return;
    }
    this.watch = new SourceWatch(() => source.dedicated(0), opts.watchIntervalMs, (a, b) => this.onSourceRestart(a, b));
    this.sweeper = opts.sweep
      ? new Sweeper(source, mover, { ...SWEEPER_DEFAULTS, ...opts.sweeper }, log, () => this.setDrained(), opts.sweeperPaused ?? null)
      : null;
  }

  async start(): Promise<void> {
    if (this.watch === null) return;
    await this.watch.start();
    await this.refresh();
    this.initialKeys = this.remainingTotal;
    this.timer = setInterval(() => void this.refresh(), this.opts.watchIntervalMs);
    this.timer.unref();
  }

  /**
   * Hold: counts the keys of `oldServer` (INFO keyspace, the phase key left out) now and every
   * watchIntervalMs, for status. Resolves after the first count (a failed count is retried).
   */
  async countWaiting(oldServer: ControlPool): Promise<void> {
    if (this.waitingTimer !== null) return;
    const read = async () => {
      try {
        this.waitingPerDb = await visibleKeyspace(oldServer.db(0));
      } catch {
        // Unreachable: keep the last count.
      }
    };
    this.waitingTimer = setInterval(() => void read(), this.opts.watchIntervalMs);
    this.waitingTimer.unref();
    await read();
  }

  get remainingTotal(): number {
    let n = 0;
    for (const v of Object.values(this.remainingPerDb)) n += v;
    return n;
  }

  /** Moved keys so far (on touch and by the sweeper). */
  get moved(): number {
    return this.mover.stats.keysMovedOnTouch + this.mover.stats.keysMovedBySweeper;
  }

  /** Seconds to drain at the current rate, or null when unknown. */
  get etaSeconds(): number | null {
    if (this.phase === 'drained') return 0;
    return this.rate > 0 ? Math.round(this.remainingTotal / this.rate) : null;
  }

  onDrained(f: () => void): void {
    if (this.phase === 'drained') f();
    else this.drainedListeners.push(f);
  }

  private async refresh(): Promise<void> {
    const now = Date.now();
    const moved = this.moved;
    const inst = ((moved - this.lastMoved) * 1000) / Math.max(1, now - this.lastAt);
    // Drained: nothing moves any more, so no rate (a smoothed one would only decay towards 0).
    this.rate = this.phase === 'drained' ? 0 : this.rate === 0 ? inst : this.rate * 0.6 + inst * 0.4;
    this.lastMoved = moved;
    this.lastAt = now;
    try {
      const per = await visibleKeyspace(this.source.db(0));
      if (this.phase === 'drained' && !this.opts.part) {
        const n = Object.values(per).reduce((a, b) => a + b, 0);
        if (n > 0 && !this.warnedRefill) {
          this.warnedRefill = true;
          this.log(
            `WARNING: ${n} keys appeared in the source after it was drained: something writes to it directly, bypassing rehome. rehome no longer reads the source; run rehome verify.`,
          );
        }
        return;
      }
      this.remainingPerDb = per;
    } catch {
      // Unreachable source: the watch reports it; keep the last figures.
    }
  }

  /**
   * Declared by the sweeper when a pass finds every db of the source empty. The source never
   * gains keys in migrate mode (rule 1), so it stays empty and is no longer consulted.
   */
  setDrained(): void {
    if (this.phase === 'drained') return;
    this.phase = 'drained';
    this.drainedAt = Date.now();
    this.rate = 0;
    const part = this.opts.part ?? null;
    if (part !== null) {
      // The source's count goes on (status: the keys outside the scope still there).
      void this.refresh();
      this.log(part.kind === 'scope'
        ? `scope ${part.label} drained (${this.moved} keys moved in ${((this.drainedAt - this.startedAt) / 1000).toFixed(1)} s); keys outside the scope stay on the old server`
        : `keys that left the scope (${part.label}) are all back on the old server (${this.moved} keys moved back)`);
      for (const f of this.drainedListeners.splice(0)) f();
      return;
    }
    this.remainingPerDb = {};
    this.mover.drained = true;
    const took = `${this.moved} keys moved in ${((this.drainedAt - this.startedAt) / 1000).toFixed(1)} s`;
    this.log(
      this.opts.reverse
        ? `rollback complete: the new server holds no key in any db (${took} back to the old server); the phase becomes hold: every command goes to the old server`
        : `migration complete: the source holds no key in any db (${took}); every command now goes straight to the target`,
    );
    for (const f of this.drainedListeners.splice(0)) f();
    // Proxy-side moves leave a publish-once marker per key in the target: safe to let go now.
    this.mover.proxy
      ?.expireMarkers()
      .then((n) => n > 0 && this.log(`${n} publish-once markers of proxy-side moves expire in the target within ${Math.round((this.mover.proxy!.opts.lateWindowMs + this.mover.proxy!.opts.leaseMs) / 1000)} s`))
      .catch((e: Error) => this.log(`could not set the expiry of the proxy-side moves' markers in the target: ${e.message}`));
  }

  private onSourceRestart(before: SourceIdentity, after: SourceIdentity): void {
    this.sourceRestarted = { at: Date.now(), before, after };
    // Keys deleted after their move may be back in the source: what the cache says is no longer
    // known. Touches now probe again, and rule 3 keeps every copy the target holds.
    this.mover.cache.clear();
    this.log(
      `WARNING: the source restarted or failed over (run_id ${before.runId.slice(0, 8)} -> ${after.runId.slice(0, 8)}, replid ${before.replId.slice(0, 8)} -> ${after.replId.slice(0, 8)}). ` +
        'Keys deleted after their move may have come back from an old snapshot. The sweeper is paused; ' +
        'check the source, then resume it (rehome sweeper resume --admin HOST:PORT).',
    );
    const reason = 'source restarted: keys may have come back from an old snapshot';
    this.sweeper?.pause(reason);
    this.opts.onPauseSweeper?.(reason);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.waitingTimer) clearInterval(this.waitingTimer);
    this.waitingTimer = null;
    await Promise.all([this.sweeper?.stop(), this.watch?.stop()]);
  }
}
