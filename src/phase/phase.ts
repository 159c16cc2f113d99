/**
 * Phases shared by every rehome process on one source/target pair, and the fenced switch.
 *
 * The phase lives in one reserved hash on the OLD server (db 0), `__rehome:phase`:
 *   phase  hold | migrate | drained | reverse | fencing
 *   epoch  a number that grows by one on every fenced switch
 *   next   while fencing: the phase being switched to
 *   prev   while fencing: the phase the fleet last acted on (what an abandoned switch restores)
 *   since  ms timestamp of the last change; by: who changed it
 *   proc:<id>  each process's own view (JSON), refreshed every second, for `rehome status`
 *   sweep:*    the fleet's sweeper settings and the sweeping process's report (fleet-record.ts)
 *   scope, returning (and while fencing nextscope, nextreturning): the canary's scope, set at
 *              step 4 of a switch like the phase (scope-record.ts)
 *
 * Fencing: every upstream connection a process uses is named `rehome-e<epoch>...` (CLIENT SETNAME)
 * before the process reads the phase and uses the connection. A switch
 *   1. sets phase=fencing with epoch+1 (compare-and-set on the epoch),
 *   2. kills every connection named for an older epoch, on both servers (CLIENT LIST + KILL),
 *   3. checks the switch's preconditions (hold: the new server is empty),
 *   4. sets the new phase.
 * A process that read the old phase before step 1 had already named its connection, so step 2
 * kills it before any process acts on the new phase; one that reads after step 1 sees fencing
 * or the new epoch and does not use the connection. So from step 2 on nothing rehome runs moves
 * or writes a key, and what step 3 sees still holds at step 4; a check made before step 1 could
 * be undone by a move or write landing before the fence. If step 2 or 3 fails, the switch is
 * abandoned: the phase of before is set again under the new epoch (nothing was done in between
 * that it does not allow).
 *
 * The record's names, its parsing and the scripts that change it are in phase-record.ts; this
 * file is the process's link to it (PhaseController) and the switch.
 */
import type { Redis } from 'ioredis';
import { RehomeError } from '../errors.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { namedRedis } from '../upstream/control.js';
import {
  changeFields,
  NO_SETTINGS,
  parseReport,
  parseSettings,
  REPORT_FIELD,
  sameSettings,
  SETTINGS_FIELDS,
  type SweepChange,
  type SweepReport,
  type SweepSettings,
} from './fleet-record.js';
import { nextFields, nextScopeRecord, SCOPE_DRAINED_SCRIPT, type ScopeRecord } from './scope-record.js';
import { EVERYTHING, type Scope } from './scope.js';
import {
  BEGIN_SCRIPT,
  INIT_SCRIPT,
  killOlderThan,
  lastActedPhase,
  parseState,
  PHASE_CHANNEL,
  PHASE_KEY,
  readPhase,
  RETURNED_SCRIPT,
  SET_SCRIPT,
  settledPhase,
  STATE_FIELDS,
  type PhaseName,
  type PhaseState,
  type SwitchablePhase,
} from './phase-record.js';

// The record's names, for the modules that know phases by this file.
export {
  epochOfName,
  fencedName,
  isReserved,
  killOlderThan,
  lastActedPhase,
  PHASE_CHANNEL,
  PHASE_KEY,
  readPhase,
  RESERVED_PREFIX,
  SWITCHABLE,
  type PhaseName,
  type PhaseState,
  type SwitchablePhase,
} from './phase-record.js';

/** How a client session fences its upstream connection when phases are in use. */
export interface SessionFence {
  epoch: number;
  /** Resolves when the phase, read after the call, is still this session's; rejects otherwise. */
  verify(): Promise<void>;
}

/** One process's view, as it reports it in the phase hash. */
export interface ProcessView {
  id: string;
  phase: PhaseName;
  epoch: number;
  clients: number;
  listen: string;
  admin: string | null;
  /** The epoch of the switch this process has gone quiet for (the gentle switch; 0: none). */
  quiesced?: number;
  /** Its sweeper's state (idle where nothing moves, disabled with --no-sweep). */
  sweeper?: string;
  seen_at: number;
}

/** The fleet as the phase hash records it: every process's report and the sweeper's. */
export interface FleetRecord {
  processes: ProcessView[];
  sweep: SweepReport | null;
}

function connect(ep: Endpoint, name: string, timeoutMs: number): Redis {
  return namedRedis(ep, name, { connectTimeoutMs: timeoutMs, commandTimeoutMs: timeoutMs, retry: (times: number) => Math.min(times * 100, 1000) });
}

export interface PhaseControllerOptions {
  /** The old server: holds the phase key. */
  old: Endpoint;
  /** The new server. */
  new: Endpoint;
  id: string;
  pollMs: number;
  connectTimeoutMs: number;
  /** The sweeper rate stored for the fleet when it has none yet (--sweep-rate). */
  sweepRate: number;
}

/**
 * One process's link to the shared phase: reads it (polling, and fresh reads for fence checks),
 * reports this process's view, and performs switches.
 */
export class PhaseController {
  state: PhaseState;
  /** The fleet's sweeper settings, read with every read of the phase. */
  settings: SweepSettings = NO_SETTINGS;
  private readonly conn: Redis;
  private timer: NodeJS.Timeout | null = null;
  /** Hears switches as they happen (PHASE_CHANNEL). */
  private sub: Redis | null = null;
  /** The epoch of the switch this process last went quiet for (ProcessView.quiesced). */
  private quietFor = 0;
  private polling = false;
  private current: Promise<PhaseState | null> | null = null;
  private nextRead: Promise<PhaseState | null> | null = null;
  private listeners: Array<(s: PhaseState) => void> = [];
  private settingsListeners: Array<(s: SweepSettings) => void> = [];
  private lastError = '';
  /** The last read of the phase: when it succeeded, and the error of the last one if it failed. */
  private lastRead = { at: Date.now(), error: '' };
  /** Supplies this process's view for the fleet report. */
  view: (() => Omit<ProcessView, 'id' | 'seen_at'>) | null = null;

  private constructor(
    private readonly opts: PhaseControllerOptions,
    conn: Redis,
    state: PhaseState,
  ) {
    this.conn = conn;
    this.state = state;
  }

  /**
   * Connects to the old server and reads the phase. With `initial`, creates the phase key when
   * it is missing; without, returns null when there is none (phases are not in use).
   */
  static async open(opts: PhaseControllerOptions, initial: SwitchablePhase | null): Promise<PhaseController | null> {
    // Named without an epoch: a switch never kills the connection that reads the phase.
    const conn = connect(opts.old, 'rehome-phase', opts.connectTimeoutMs);
    try {
      let state: PhaseState | null;
      if (initial !== null) {
        const r = (await conn.eval(INIT_SCRIPT, 1, PHASE_KEY, initial, String(Date.now()), opts.id, '1')) as Array<string | null>;
        state = parseState(r);
      } else {
        state = await readPhase(conn);
      }
      if (state === null) {
        conn.disconnect();
        return null;
      }
      // --sweep-rate is the fleet's first value only: what an operator set since is kept.
      await conn.hsetnx(PHASE_KEY, 'sweep:rate', String(opts.sweepRate));
      const c = new PhaseController(opts, conn, state);
      c.settings = parseSettings((await conn.hmget(PHASE_KEY, ...SETTINGS_FIELDS)) as Array<string | null>);
      return c;
    } catch (e) {
      conn.disconnect();
      throw new RehomeError('EUPSTREAM', `cannot read the phase from the old server ${describeEndpoint(opts.old)}: ${(e as Error).message}`);
    }
  }

  /** Polls the phase and reports this process's view; calls listeners on every change. */
  start(): void {
    this.timer = setInterval(() => void this.poll(), this.opts.pollMs);
    this.timer.unref();
    const sub = connect(this.opts.old, 'rehome-phase', this.opts.connectTimeoutMs);
    sub.on('message', () => void this.fresh().catch(() => null));
    void sub.subscribe(PHASE_CHANNEL).catch(() => undefined);
    this.sub = sub;
  }

  onChange(f: (s: PhaseState) => void): void {
    this.listeners.push(f);
  }

  /** Calls `f` whenever the fleet's sweeper rate or pause changes (read or set here). */
  onSettings(f: (s: SweepSettings) => void): void {
    this.settingsListeners.push(f);
  }

  /** This process in the fleet's records (`proc:<id>`, the sweeper's report). */
  get id(): string {
    return this.opts.id;
  }

  private lastReport = 0;

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await this.fresh();
      if (Date.now() - this.lastReport >= 1_000) await this.report();
    } catch (e) {
      this.lastError = (e as Error).message;
    } finally {
      this.polling = false;
    }
  }

  private async report(): Promise<void> {
    if (this.view === null) return;
    this.lastReport = Date.now();
    const v: ProcessView = { id: this.opts.id, ...this.view(), quiesced: this.quietFor, seen_at: Date.now() };
    await this.conn.hset(PHASE_KEY, `proc:${this.opts.id}`, JSON.stringify(v));
  }

  /** The gentle switch: this process dispatches nothing for the epoch before `epoch` any more. */
  async reportQuiet(epoch: number): Promise<void> {
    this.quietFor = Math.max(this.quietFor, epoch);
    await this.report().catch(() => undefined);
  }

  /**
   * The gentle switch: waits, at most `ms`, until every process seen lately has gone quiet for
   * `epoch` (reportQuiet): their commands in flight have finished, so the fence cuts none off.
   */
  private async waitQuiet(epoch: number, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const fleet = (await this.fleet()).processes;
      // This process's own report too: a process started less than a record's interval ago has
      // none yet, and an empty fleet would let the fence cut off clients it was about to carry.
      if (fleet.some((p) => p.id === this.opts.id) && fleet.every((p) => (p.quiesced ?? 0) >= epoch)) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * A read of the phase sent after this call (never one already in flight: a fence check must
   * read after its connection was named). Concurrent callers share the next read.
   */
  fresh(): Promise<PhaseState | null> {
    if (this.current === null) return this.readNow();
    if (this.nextRead === null) {
      this.nextRead = this.current.catch(() => null).then(() => {
        this.nextRead = null;
        return this.readNow();
      });
    }
    return this.nextRead;
  }

  private readNow(): Promise<PhaseState | null> {
    const p = this.readWithSettings().then(async (s) => {
      if (s === null) {
        // Someone deleted the phase key (a FLUSHALL straight on the old server): put back the
        // phase every process has been acting on, unless another process already did.
        const cur = this.state;
        const phase = cur.phase === 'fencing' ? 'fencing' : cur.phase;
        const r = (await this.conn.eval(INIT_SCRIPT, 1, PHASE_KEY, phase, String(Date.now()), this.opts.id, String(cur.epoch))) as Array<string | null>;
        s = parseState(r);
        if (s !== null) this.lastError = `the phase key was missing on the old server; restored ${s.phase} at epoch ${s.epoch}`;
        await this.restoreSettings();
      }
      if (s !== null) this.update(s);
      return s;
    });
    this.current = p;
    void p.then(
      () => (this.lastRead = { at: Date.now(), error: '' }),
      (e: Error) => (this.lastRead.error = e.message),
    );
    void p.finally(() => {
      if (this.current === p) this.current = null;
    }).catch(() => {});
    return p;
  }

  /** The phase, and the settings stored beside it (one HMGET). */
  private async readWithSettings(): Promise<PhaseState | null> {
    const r = (await this.conn.hmget(PHASE_KEY, ...STATE_FIELDS, ...SETTINGS_FIELDS)) as Array<string | null>;
    const settings = parseSettings(r.slice(STATE_FIELDS.length));
    // A hash without a phase was deleted and is about to be restored: keep the settings known.
    if (r[0]) this.updateSettings(settings);
    return parseState(r);
  }

  /** Puts back the settings known here into a phase hash that was deleted, unless set since. */
  private async restoreSettings(): Promise<void> {
    const s = this.settings;
    if (s.rate !== null) await this.conn.hsetnx(PHASE_KEY, 'sweep:rate', String(s.rate));
    if (s.paused !== null) await this.conn.hsetnx(PHASE_KEY, 'sweep:paused', s.paused);
  }

  private updateSettings(s: SweepSettings): void {
    const before = this.settings;
    this.settings = s;
    if (!sameSettings(before, s)) for (const f of this.settingsListeners) f(s);
  }

  /**
   * Stores a change of the fleet's sweeper settings, and returns them as stored. Every process
   * reads them with its next read of the phase; this one follows them at once.
   */
  async setSweep(change: SweepChange, by: string): Promise<SweepSettings> {
    await this.conn.hset(PHASE_KEY, ...changeFields(change, by, Date.now()));
    const s = parseSettings((await this.conn.hmget(PHASE_KEY, ...SETTINGS_FIELDS)) as Array<string | null>);
    this.updateSettings(s);
    return s;
  }

  /** The sweeping process's report, rewritten every second while it sweeps. */
  async publishSweep(report: SweepReport): Promise<void> {
    await this.conn.hset(PHASE_KEY, REPORT_FIELD, JSON.stringify(report));
  }

  private update(s: PhaseState): void {
    const before = this.state;
    this.state = s;
    if (before.epoch !== s.epoch || before.phase !== s.phase || before.next !== s.next || before.scope.returning.length !== s.scope.returning.length ||
        before.scopeDrained !== s.scopeDrained) {
      for (const f of this.listeners) f(s);
    }
  }

  /**
   * Resolves when the epoch is still `epoch` and no switch is under way, as read after the call;
   * rejects otherwise. (Within one epoch the phase only goes from migrate to drained or from
   * reverse to hold, which need no fencing.)
   */
  async verify(epoch: number): Promise<void> {
    const s = await this.fresh();
    if (s === null || s.epoch !== epoch || s.phase === 'fencing') {
      throw new RehomeError(
        'EFENCED',
        `the phase changed (epoch ${epoch} -> ${s ? `${s.phase} at epoch ${s.epoch}` : 'no phase key'}); reconnect`,
      );
    }
  }

  /** Every process's last report (those seen in the last 10 s, this one included), and the sweeper's. */
  async fleet(): Promise<FleetRecord> {
    const all = (await this.conn.hgetall(PHASE_KEY)) as Record<string, string>;
    const out: ProcessView[] = [];
    const now = Date.now();
    const stale: string[] = [];
    for (const [k, v] of Object.entries(all)) {
      if (!k.startsWith('proc:')) continue;
      try {
        const p = JSON.parse(v) as ProcessView;
        if (now - p.seen_at <= 10_000) out.push(p);
        else if (now - p.seen_at > 60_000) stale.push(k);
      } catch {
        stale.push(k);
      }
    }
    if (stale.length > 0) await this.conn.hdel(PHASE_KEY, ...stale).catch(() => 0);
    return { processes: out.sort((a, b) => a.id.localeCompare(b.id)), sweep: parseReport(all[REPORT_FIELD]) };
  }

  /**
   * The fenced switch (see the file comment). `check` is step 3: it gets the phase the fleet
   * acted on before the switch (null if unknown) and refuses the switch by throwing; the switch
   * is then abandoned and the error says which phase the fleet is left in. Before the fence,
   * every process gets up to `drainMs` to finish the commands it has in flight (the gentle switch).
   */
  async switchTo(
    to: SwitchablePhase,
    by: string,
    check: (prev: PhaseName | null) => Promise<void> = async () => {},
    drainMs = 0,
    scope: Scope = EVERYTHING,
  ): Promise<{ from: PhaseName; epoch: number; killed: number; scope: ScopeRecord }> {
    const cur = await this.fresh();
    if (cur === null) throw new RehomeError('ENOPHASE', 'the phase key is gone from the old server');
    const from = cur.phase === 'fencing' ? (cur.next ?? 'fencing') : cur.phase;
    // The scope a switch sets follows from the one the fleet acted on (a switch that died while
    // fencing never set its own): checked against the epoch by the compare-and-set below.
    const next = nextScopeRecord(lastActedPhase(cur), cur.scope, to, scope);
    const [e, prevText] = (await this.conn.eval(BEGIN_SCRIPT, 1, PHASE_KEY, String(cur.epoch), to, String(Date.now()), by, nextFields(next)[1]!, nextFields(next)[3]!)) as [number, string];
    const prev = settledPhase(prevText);
    this.update({ phase: 'fencing', epoch: e, next: to, prev, since: Date.now(), by, scope: cur.scope, scopeDrained: cur.scopeDrained });
    await this.conn.publish(PHASE_CHANNEL, String(e)).catch(() => 0);
    // Processes hear of the switch within a poll: that, on top of their own drain.
    if (drainMs > 0) await this.waitQuiet(e, drainMs + 2 * this.opts.pollMs);
    let killed = 0;
    try {
      killed = await this.killOlderEpochs(e);
    } catch (err) {
      throw await this.abandon(e, prev, by, new RehomeError('EUPSTREAM', `cannot close the connections of older epochs: ${(err as Error).message}`));
    }
    try {
      await check(prev);
    } catch (err) {
      throw await this.abandon(e, prev, by, err as Error);
    }
    await this.conn.eval(SET_SCRIPT, 1, PHASE_KEY, String(e), 'fencing', to, String(Date.now()), by, '1');
    await this.conn.publish(PHASE_CHANNEL, String(e)).catch(() => 0);
    await this.fresh();
    return { from, epoch: e, killed, scope: next };
  }

  /**
   * The return sweep found no key of `returning` on the new server: empties the list (same epoch,
   * no fence: see scope-record.ts). False when the phase or the list changed meanwhile.
   */
  async markReturned(epoch: number, returning: string): Promise<boolean> {
    try {
      const ok = Number(await this.conn.eval(RETURNED_SCRIPT, 1, PHASE_KEY, String(epoch), returning)) === 1;
      await this.conn.publish(PHASE_CHANNEL, String(epoch)).catch(() => 0);
      await this.fresh();
      return ok;
    } catch {
      return false;
    }
  }

  private async killOlderEpochs(epoch: number): Promise<number> {
    const other = connect(this.opts.new, 'rehome-phase', this.opts.connectTimeoutMs);
    try {
      const [a, b] = await Promise.all([killOlderThan(this.conn, epoch), killOlderThan(other, epoch)]);
      return a + b;
    } finally {
      other.disconnect();
    }
  }

  /**
   * Ends a switch that cannot go on after step 1: the phase of before, under the new epoch. It is
   * what every process acted on until the fence, and nothing has acted on anything else since,
   * so no check is needed to go back to it. Returns the error for the caller: `cause`'s text
   * (the reason) followed by the state the fleet is left in.
   */
  private async abandon(epoch: number, prev: PhaseName | null, by: string, cause: Error): Promise<RehomeError> {
    const code = cause instanceof RehomeError ? cause.code : 'EPHASE';
    const left = (state: string) => new RehomeError(code, `${cause.message}; the switch was abandoned after fencing began: ${state}`);
    if (prev === null) {
      // Only when a switch died while fencing and the phase before it was not recorded.
      return left(`the phase stays fencing at epoch ${epoch} (the phase before it is not known): run rehome phase again`);
    }
    try {
      await this.conn.eval(SET_SCRIPT, 1, PHASE_KEY, String(epoch), 'fencing', prev, String(Date.now()), by);
    } catch (e) {
      return left(`the phase could not be set back to ${prev} (${(e as Error).message}); it stays fencing at epoch ${epoch} until rehome phase is run again`);
    }
    await this.conn.publish(PHASE_CHANNEL, String(epoch)).catch(() => 0);
    await this.fresh().catch(() => null);
    return left(`the phase is ${prev} again (epoch ${epoch})`);
  }

  /**
   * Marks the end of a drain without fencing: migrate -> drained (the source is empty, every
   * command goes to the new server either way) and reverse -> hold (the new server is empty,
   * every command goes to the old one either way).
   */
  async markDrained(epoch: number, from: 'migrate' | 'reverse'): Promise<boolean> {
    const to = from === 'migrate' ? 'drained' : 'hold';
    try {
      await this.conn.eval(SET_SCRIPT, 1, PHASE_KEY, String(epoch), from, to, String(Date.now()), this.opts.id);
      await this.fresh();
      return true;
    } catch {
      return false;
    }
  }

  /** Records the scope drained at `epoch` for the fleet (scope-record.ts); false if not. */
  async markScopeDrained(epoch: number): Promise<boolean> {
    try {
      const set = (await this.conn.eval(SCOPE_DRAINED_SCRIPT, 1, PHASE_KEY, String(epoch))) === 1;
      await this.fresh();
      return set;
    } catch {
      return false;
    }
  }

  get error(): string {
    return this.lastError;
  }

  /**
   * Why this process cannot trust its view of the phase right now, or null: the last read failed,
   * or (once polling) none has succeeded for longer than a read may take. /readyz uses it.
   */
  readProblem(now = Date.now()): string | null {
    const { at, error } = this.lastRead;
    const where = describeEndpoint(this.opts.old);
    if (error) return `the phase cannot be read from the old server ${where}: ${error}`;
    const age = now - at;
    if (this.timer !== null && age > this.opts.connectTimeoutMs + 4 * this.opts.pollMs) {
      return `the phase has not been read from the old server ${where} for ${age} ms`;
    }
    return null;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sub?.disconnect();
    this.sub = null;
    await this.conn.hdel(PHASE_KEY, `proc:${this.opts.id}`).catch(() => 0);
    await this.conn.quit().catch(() => this.conn.disconnect());
  }
}
