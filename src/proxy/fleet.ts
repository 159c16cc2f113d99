/**
 * The fleet as one, for status and the sweeper's controls: any process (a standby included)
 * answers for the whole fleet of processes on a pair.
 *
 * - Keys remaining come from the server keys move out of, read by this process every second
 *   (the old server; the new one in reverse), never from a figure another process computed.
 * - Rate and ETA come from the sweeping process, which publishes its rate with the phase every
 *   second (src/phase/fleet-record.ts). A report that stops changing for REPORT_STALE_MS is shown
 *   as stale; one of another phase or epoch is not shown. Staleness is timed on this process's
 *   clock (when it last saw the report change), so clock skew between hosts does not matter.
 * - Sweeper settings (rate, pause) are the fleet's, stored with the phase; every process's
 *   runtime follows them (runtime.ts), and any process may change them, whether it sweeps or not.
 */
import type { ProxyConfig } from '../config.js';
import { RehomeError } from '../errors.js';
import type { Migration } from '../migration/migration.js';
import { visibleKeyspace } from '../migration/source-watch.js';
import type { SweepChange, SweepReport, SweepSettings } from '../phase/fleet-record.js';
import type { PhaseController, ProcessView } from '../phase/phase.js';
import { ControlPool } from '../upstream/control.js';

/** A report not rewritten for this long (the sweeper writes one every second) is stale. */
export const REPORT_STALE_MS = 3_000;
const REFRESH_MS = 1_000;

/** What the fleet view reads from this process: its runtimes (runtime.ts). */
export interface FleetHost {
  /** The current phase's migration (the last one while a switch is under way). */
  readonly migration: Migration;
  /** The runtime in effect; null while a switch is under way. */
  readonly current: { phase: string; epoch: number } | null;
  /** The sweeper settings this process follows (the fleet's, or the flags' without phases). */
  sweepSettings(): { rate: number; paused: string | null };
}

type Side = 'old' | 'new';

/** The keys left in the server keys move out of, as last read. */
interface Remaining {
  side: Side;
  perDb: Record<number, number>;
  at: number;
  error: string | null;
}

/** Every process's view of the fleet, refreshed every second; publishes the report while sweeping. */
export class FleetView {
  processes: ProcessView[] = [];
  private report: SweepReport | null = null;
  /** When this process last saw the report change (its own clock). */
  private reportSeenAt = 0;
  private remaining: Remaining | null = null;
  private readonly pools: Partial<Record<Side, ControlPool>> = {};
  private timer: NodeJS.Timeout | null = null;
  private refreshing = false;

  constructor(
    private readonly phases: PhaseController,
    private readonly config: ProxyConfig,
    private readonly host: FleetHost,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.timer.unref();
    void this.refresh();
    // A new phase may read another server, or find the old one drained: count again at once.
    this.phases.onChange(() => void this.countRemaining());
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.all(Object.values(this.pools).map((p) => p.close()));
  }

  private async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      await this.publish().catch(() => undefined);
      await this.phases.fleet().then((f) => {
        this.processes = f.processes;
        this.seeReport(f.sweep);
      }, () => undefined);
      await this.countRemaining();
    } finally {
      this.refreshing = false;
    }
  }

  /** While this process sweeps: its rate, for every process's status. */
  private async publish(): Promise<void> {
    const rt = this.host.current;
    const m = this.host.migration;
    if (rt === null || m.sweeper?.state !== 'sweeping') return;
    await this.phases.publishSweep({
      id: this.phases.id,
      phase: rt.phase,
      epoch: rt.epoch,
      rate: Math.round(m.rate),
      remaining: m.remainingTotal,
      at: Date.now(),
    });
  }

  private seeReport(r: SweepReport | null): void {
    const before = this.report;
    this.report = r;
    if (r === null) return;
    const now = Date.now();
    // First sight: the publisher's clock is all there is to age it by.
    if (before === null) this.reportSeenAt = Math.min(now, r.at);
    else if (before.at !== r.at || before.id !== r.id) this.reportSeenAt = now;
  }

  /** Which server keys move out of in the fleet's phase (hold: what migrate would move). */
  private side(): Side {
    const s = this.phases.state;
    const p = s.phase === 'fencing' ? (s.next ?? s.prev) : s.phase;
    return p === 'reverse' ? 'new' : 'old';
  }

  private pool(side: Side): ControlPool {
    let p = this.pools[side];
    if (!p) {
      const config = this.config;
      // Unfenced (named without an epoch): a switch does not kill it, and it only reads INFO.
      const ep = side === 'old' ? config.source : config.target;
      p = new ControlPool(ep, { commandTimeoutMs: config.connectTimeoutMs * 2, connectTimeoutMs: config.connectTimeoutMs }, 'source');
      this.pools[side] = p;
    }
    return p;
  }

  private async countRemaining(): Promise<void> {
    const side = this.side();
    try {
      this.remaining = { side, perDb: await visibleKeyspace(this.pool(side).db(0)), at: Date.now(), error: null };
    } catch (e) {
      const last = this.remaining?.side === side ? this.remaining : null;
      this.remaining = { side, perDb: last?.perDb ?? {}, at: last?.at ?? 0, error: (e as Error).message };
    }
  }

  /** The `fleet` object of /status. */
  section(now = Date.now()): Record<string, unknown> {
    const s = this.phases.state;
    const settings = this.phases.settings;
    const follow = this.host.sweepSettings();
    const rem = this.remaining;
    const total = rem ? Object.values(rem.perDb).reduce((a, b) => a + b, 0) : null;
    const sweep = this.sweeperState(now);
    let rate: number | null = null;
    let eta: number | null = null;
    if (s.phase === 'drained') {
      rate = 0;
      eta = 0;
    } else if (sweep.report !== null) {
      rate = sweep.report.rate;
      if (!sweep.stale && rate > 0 && total !== null) eta = Math.ceil(total / rate);
    }
    return {
      phase: s.phase,
      epoch: s.epoch,
      remaining: rem
        ? {
            server: rem.side,
            total,
            per_db: rem.perDb,
            read_at: rem.at ? new Date(rem.at).toISOString() : null,
            age_ms: rem.at ? now - rem.at : null,
            error: rem.error,
          }
        : null,
      rate_keys_per_s: rate,
      eta_s: eta,
      rate_reported: sweep.report
        ? { by: sweep.report.id, at: new Date(sweep.report.at).toISOString(), age_ms: now - this.reportSeenAt, stale: sweep.stale }
        : null,
      sweeper: {
        state: sweep.state,
        on: sweep.report && !sweep.stale && sweep.state === 'sweeping' ? sweep.report.id : null,
        paused: follow.paused !== null,
        pause_reason: follow.paused,
        rate_limit: follow.rate || null,
        set_by: settings.by || null,
        set_at: settings.at ? new Date(settings.at).toISOString() : null,
      },
      processes: this.processes,
    };
  }

  /**
   * The fleet's sweeper in words, and the report its rate comes from (null when none applies:
   * hold, a switch under way, paused, another phase or epoch).
   */
  private sweeperState(now: number): { state: string; report: SweepReport | null; stale: boolean } {
    const s = this.phases.state;
    const none = (state: string) => ({ state, report: null, stale: false });
    if (s.phase === 'fencing') return none(`switching to ${s.next ?? '?'}`);
    if (s.phase === 'hold') return none('not sweeping (hold)');
    if (s.phase === 'drained') return none('drained');
    if (this.host.sweepSettings().paused !== null) return none('paused');
    const r = this.report;
    if (r !== null && r.epoch === s.epoch && r.phase === s.phase) {
      const stale = now - this.reportSeenAt > REPORT_STALE_MS;
      return { state: stale ? 'not reporting (stale)' : 'sweeping', report: r, stale };
    }
    const rows = this.processes;
    if (rows.length > 0 && rows.every((p) => p.sweeper === 'disabled')) return none('not sweeping (--no-sweep on every process)');
    return none('starting');
  }
}

/** The answer to a sweeper control: this process's sweeper after it, and the fleet's settings. */
export interface SweeperAnswer {
  /** This process's sweeper state, or where it runs none what the fleet's is. */
  sweeper: string;
  pause_reason: string | null;
  rate_limit: number | null;
  /** The fleet's settings as stored; null without phases (the change is this process's only). */
  fleet: { paused: boolean; pause_reason: string | null; rate_limit: number | null; set_by: string; set_at: string } | null;
  note: string;
}

/**
 * Changes the sweeper's settings: with phases, stores them for the fleet (this process follows
 * at once, the others on their next read of the phase); without, changes this process's sweeper,
 * refused (ENOSWEEP) where it has none. `idle` says why this process runs no sweeper now.
 */
export async function changeSweeper(
  phases: PhaseController | null,
  migration: Migration,
  change: SweepChange,
  by: string,
  idle: string,
): Promise<SweeperAnswer> {
  const sw = migration.sweeper;
  if (phases === null) {
    if (!sw) throw new RehomeError('ENOSWEEP', 'the sweeper is disabled (--no-sweep)');
    if (change.rate !== undefined) sw.setRate(change.rate);
    if (change.paused !== undefined) {
      if (change.paused === null) sw.resume();
      else sw.pause(change.paused);
    }
    return { sweeper: sw.state, pause_reason: sw.pauseReason || null, rate_limit: sw.opts.rate || null, fleet: null, note: 'this process only (no phases in use)' };
  }
  let stored: SweepSettings;
  try {
    stored = await phases.setSweep(change, by);
  } catch (e) {
    // Pausing is the safe direction: this process at least stops sweeping.
    if (change.paused) sw?.pause(change.paused);
    throw new RehomeError(
      'EUPSTREAM',
      `cannot store the sweeper setting on the old server (${(e as Error).message}); nothing changed for the fleet${change.paused && sw ? ', only this process paused its sweeper' : ''}`,
    );
  }
  // Followed here at once, even when the stored value did not change (this process's sweeper
  // may have paused on its own, for a source restart that could not be stored).
  sw?.follow({ rate: stored.rate ?? sw.opts.rate, paused: stored.paused });
  const where = sw
    ? 'every process\'s sweeper follows it'
    : `this process runs no sweeper now (${idle}); whichever process sweeps follows it`;
  return {
    sweeper: sw?.state ?? (stored.paused !== null ? 'paused' : 'not sweeping here'),
    pause_reason: sw ? sw.pauseReason || null : stored.paused,
    rate_limit: (sw ? sw.opts.rate : stored.rate) || null,
    fleet: {
      paused: stored.paused !== null,
      pause_reason: stored.paused,
      rate_limit: stored.rate || null,
      set_by: stored.by,
      set_at: new Date(stored.at).toISOString(),
    },
    note: `stored for the fleet: ${where}, across phase switches, lease takeovers and restarts`,
  };
}
