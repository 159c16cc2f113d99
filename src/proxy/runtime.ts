/**
 * The per-epoch runtime: everything that serves clients in one phase at one epoch. Its upstream
 * connections are named for the epoch, so a fenced switch (src/phase/phase.ts) can kill every one
 * of them on both servers; a phase change therefore retires the runtime whole, sessions included,
 * and builds the next one, rather than changing a running one in place.
 *
 * Runtimes owns the runtime in effect and the changes between them: the first one at start, the
 * rebuild after a phase change (one at a time, in order), the fleet-wide switch this process
 * asks for, and the end of a drain. The sweeper of each runtime follows the fleet's sweeper
 * settings (stored with the phase), not the start-up flags, so they outlive every rebuild.
 * What a runtime is made of (connections, mover, migration) comes from runtime-parts.ts.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { ProxyConfig } from '../config.js';
import { RehomeError } from '../errors.js';
import type { Migration } from '../migration/migration.js';
import { lastActedPhase, type PhaseName, type PhaseState, type SwitchablePhase } from '../phase/phase.js';
import { keysComeBack } from '../phase/moving-now.js';
import { dropMarkers } from '../migration/drop-markers.js';
import { describeScope, isEverything, NO_SCOPE_FLAGS, parseScope, sameScope, type ScopeFlags } from '../phase/scope.js';
import { encodeReturning } from '../phase/scope-record.js';
import { closeOldSide } from '../session/scope-route.js';
import { ScopeCounters, type ScopeRouting } from '../session/scope-routing.js';
import type { ControlPool } from '../upstream/control.js';
import type { SessionFence } from '../phase/phase.js';
import type { Carried } from '../session/carry.js';
import type { Session, SessionContext } from '../session/session.js';
import { SharedLanes } from '../session/shared-lane.js';
import { type Logger, type MethodChoice, type Pair, switchPreconditions } from './startup.js';
import { settledWithin } from '../util/settled-within.js';
import { RuntimeParts } from './runtime-parts.js';

/** The phases a runtime can serve (legacy: a proxy started without phases, always migrate). */
export type RuntimePhase = 'hold' | 'migrate' | 'drained' | 'reverse';

/** What a phase switch answers (POST /phase). */
export interface SwitchAnswer {
  from: string;
  to: string;
  epoch: number;
  killed: number;
  /** The scope in force after it, and the scopes whose keys are coming back home. */
  scope: string;
  returning: string[];
}

/** Everything that belongs to one phase at one epoch. */
export interface Runtime {
  phase: RuntimePhase;
  /** 0 without phases. */
  epoch: number;
  ctx: SessionContext;
  migration: Migration;
  pools: ControlPool[];
  sessions: Set<Session>;
  /** Shared connections to the target (null: --shared-connections 0). */
  lanes: SharedLanes | null;
  /** Keeps idle own connections of clients on the lanes open (Session.keepOwnAlive). */
  keepalive: NodeJS.Timeout | null;
  /** How keys move in this runtime and why; null where nothing moves (hold, drained). */
  moves: { reverse: boolean; choice: MethodChoice } | null;
  /** A canary migration: the scope, and the sweep bringing keys that left it home (scoped.ts). */
  scoped: ScopedParts | null;
}

/** A canary migration's parts in a runtime (docs/DESIGN.md "Scope"). */
export interface ScopedParts {
  /** What its sessions route by. */
  routing: ScopeRouting;
  /** The sweep that brings keys that left the scope home (new -> old); null when none left it. */
  back: Migration | null;
  /** The return sweep's connections (closed with the runtime). */
  pools: ControlPool[];
}

/** Why keys of the scope move without MIGRATE while keys come back (phase/moving-now.ts, keysComeBack). */
const COME_BACK = 'keys that left the scope come back by MIGRATE meanwhile, and a MIGRATE each way at once holds both servers';

function withoutMigrate(c: MethodChoice): MethodChoice {
  if (c.method !== 'migrate') return c;
  return { method: 'dump', reason: `${c.reason}, but ${COME_BACK}` };
}

/** The log line that names a runtime's move method. */
export function movesLine(m: NonNullable<Runtime['moves']>): string {
  return `moves ${m.reverse ? 'new -> old (reverse)' : 'old -> new'} by ${m.choice.method}: ${m.choice.reason}`;
}

/** What the proxy reports as it works (the metrics, when the admin endpoint is on). */
export interface ProxyObserver {
  /** A sampled command: seconds from being framed to its reply being ready. */
  observeCommand(seconds: number): void;
  /** One MIGRATE sent to the source: how long it took, the keys it named, whether it succeeded. */
  observeMigrate(ms: number, keys: number, ok: boolean): void;
}

/** Requests handled by every runtime's sessions and lanes, for /metrics. */
export interface ProxyCounters {
  commands: number;
  sharedCommands: number;
  sharedFailures: number;
}

/** What the runtimes need from the server that accepts the clients. */
export interface RuntimeHost {
  readonly config: ProxyConfig;
  readonly log: Logger;
  readonly pair: Pair;
  readonly observer: ProxyObserver | null;
  readonly counters: ProxyCounters;
  /** The proxy is closing: a runtime built now is retired at once. */
  closing(): boolean;
  /** A session of any runtime has closed. */
  sessionClosed(s: Session): void;
  /** A runtime is in effect after a switch: the clients that waited for one may start. */
  resumeWaiting(): void;
  /** A switch did not finish in time: the clients waiting for it are closed. */
  dropWaiting(why: string): void;
  /** A client carried over a switch (the gentle switch): it waits with those for the next phase. */
  carry(c: Carried): void;
}

/** The runtime in effect, and the changes from one to the next. */
export class Runtimes {
  private rt: Runtime | null = null;
  /** The last runtime's migration, kept for status while a switch is under way. */
  private last: Migration | null = null;
  /** One rebuild at a time: a phase change waits for the one before it. */
  private rebuilding: Promise<void> = Promise.resolve();
  private readonly parts: RuntimeParts;
  private readonly drainedListeners: Array<() => void> = [];
  private drainedFired = false;
  /** The first runtime is built (later ones log their move method themselves). */
  private started = false;
  /** This process in the phase record (`by` of a switch it made). */
  readonly processId = `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;

  constructor(private readonly host: RuntimeHost) {
    this.parts = new RuntimeParts(host, this.processId, () => this.sweepSettings());
    host.pair.phases?.onChange((s) => this.onPhaseChange(s));
    host.pair.phases?.onSettings(() => this.rt?.migration.sweeper?.follow(this.sweepSettings()));
  }

  /**
   * The sweeper settings a runtime follows: the fleet's (stored with the phase), the start-up
   * flag's rate where the fleet has none; without phases, the flag's.
   */
  sweepSettings(): { rate: number; paused: string | null } {
    const s = this.host.pair.phases?.settings;
    return { rate: s?.rate ?? this.host.config.sweepRate, paused: s?.paused ?? null };
  }

  /** Builds the first runtime, for the shared phase once no switch is under way. */
  async start(): Promise<Runtime> {
    const first = this.host.pair.phases ? await this.settledPhase() : null;
    const rt = await this.build(first);
    this.rt = rt;
    this.last = rt.migration;
    this.started = true;
    return rt;
  }

  /** The runtime in effect; null while a switch is under way (and once stopped). */
  get current(): Runtime | null {
    return this.rt;
  }

  /** The current phase's migration (the last one while a switch is under way). */
  get migration(): Migration {
    return (this.rt?.migration ?? this.last)!;
  }

  /** Retires the runtime in effect, after any rebuild under way; none is built after this. */
  async stop(): Promise<void> {
    await this.rebuilding.catch(() => undefined);
    const rt = this.rt;
    this.rt = null;
    if (rt) await this.retire(rt, 'stopping');
  }

  /** Calls `f` once the migration has drained the old server (now, if it has). */
  onDrained(f: () => void): void {
    if (this.drainedFired) f();
    else this.drainedListeners.push(f);
  }

  /** The shared phase once it is not fencing (a switch under way finishes first). */
  private async settledPhase(): Promise<PhaseState> {
    const c = this.host.pair.phases!;
    const wait = this.host.config.fenceWaitMs;
    const deadline = Date.now() + wait;
    for (;;) {
      const s = (await c.fresh()) ?? c.state;
      if (s.phase !== 'fencing') return s;
      if (Date.now() > deadline) {
        throw new RehomeError('EFENCED', `the phase has been fencing (switch to ${s.next ?? '?'}) for over ${wait} ms: a switch did not finish; run rehome phase again`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Another process's sweeper found no key of the scope left at this epoch (scope-record.ts
   * SCOPE_DRAINED_SCRIPT): the scope is drained for every process of the epoch, and this one's
   * sweeper (on standby, or none with --no-sweep) need not find it again.
   */
  private takeScopeDrained(rt: Runtime, s: PhaseState): void {
    if (rt.scoped === null || rt.phase !== 'migrate' || s.scopeDrained !== rt.epoch || rt.migration.phase === 'drained') return;
    this.host.log(`scope ${describeScope(rt.scoped.routing.scope)} drained: found by another process's sweeper (epoch ${rt.epoch})`);
    rt.migration.setDrained();
  }

  /** The phase changed (seen by the poll, a fence check or this process's own switch). */
  private onPhaseChange(s: PhaseState): void {
    const rt = this.rt;
    if (rt !== null && s.epoch === rt.epoch && (
      (rt.phase === 'migrate' && s.phase === 'drained') || (rt.phase === 'reverse' && s.phase === 'hold'))) {
      // The end of a drain, same epoch: nothing changes for clients, the source is empty.
      this.host.log(`phase ${rt.phase} -> ${s.phase} (epoch ${s.epoch}): the ${rt.phase === 'migrate' ? 'old' : 'new'} server is empty`);
      rt.phase = s.phase;
      rt.migration.setDrained();
      // After a rollback, hold: what a migrate would move is on the old server (the target here).
      if (rt.phase === 'hold') void rt.migration.countWaiting(rt.ctx.target);
      return;
    }
    if (rt !== null && s.phase === 'migrate' && s.epoch === rt.epoch) this.takeScopeDrained(rt, s);
    if (rt !== null && s.epoch === rt.epoch && s.phase === rt.phase) {
      // Keys that left the scope are all home (another process's return sweep said so).
      if (rt.scoped !== null && s.scope.returning.length === 0 && rt.scoped.routing.returning.length > 0) {
        rt.scoped.routing.returning = [];
        void rt.scoped.back?.stop();
      }
      return;
    }
    this.rebuilding = this.rebuilding.then(() => this.switchRuntime()).catch((e: Error) => {
      this.host.log(`phase switch failed: ${e.message}; retrying`);
      setTimeout(() => this.onPhaseChange(this.host.pair.phases!.state), 500).unref();
    });
  }

  /** Retires the current runtime and builds the one the shared phase now asks for. */
  private async switchRuntime(): Promise<void> {
    const c = this.host.pair.phases!;
    const want = c.state;
    const rt = this.rt;
    if (this.host.closing()) return;
    if (rt !== null && want.epoch === rt.epoch && want.phase === rt.phase) return;
    if (rt !== null) {
      this.rt = null;
      const to = want.phase === 'fencing' ? (want.next ?? 'fencing') : want.phase;
      const t0 = Date.now();
      const carried = want.phase === 'fencing' ? await this.quiesce(rt) : 0;
      this.host.log(`phase ${rt.phase} (epoch ${rt.epoch}) -> ${want.phase === 'fencing' ? `fencing for ${want.next ?? '?'}` : want.phase} (epoch ${want.epoch}): ${carried} client connection(s) carried over after ${Date.now() - t0} ms, closing ${rt.sessions.size}`);
      await this.retire(rt, `the phase changed to ${to} (epoch ${want.epoch}); reconnect`);
      if (want.phase === 'fencing') await c.reportQuiet(want.epoch);
    }
    if (want.phase === 'fencing') {
      // Wait for the switch to finish (the poll calls back); clients connecting now wait.
      setTimeout(() => {
        if (this.rt === null && c.state.phase === 'fencing') this.host.dropWaiting('the phase switch did not finish in time');
      }, this.host.config.fenceWaitMs).unref();
      return;
    }
    const next = await this.build(want);
    if (this.host.closing()) {
      await this.retire(next, 'stopping');
      return;
    }
    this.rt = next;
    this.last = next.migration;
    this.host.log(`phase ${next.phase} (epoch ${next.epoch}) in effect`);
    this.host.resumeWaiting();
    // The phase may have moved on while this one was being built.
    if (c.state.epoch !== next.epoch || (c.state.phase !== next.phase && c.state.phase !== 'drained' && c.state.phase !== 'hold')) {
      this.onPhaseChange(c.state);
    }
  }

  /**
   * The gentle switch (carry.ts): the sweeper stops and no session dispatches anything more;
   * once nothing is in flight (or --switch-drain-ms has passed) every session that can be is
   * detached for the next phase. Returns how many were.
   */
  private async quiesce(rt: Runtime): Promise<number> {
    const drainMs = this.host.config.switchDrainMs;
    if (drainMs === 0) return 0;
    const sessions = [...rt.sessions];
    await settledWithin(Promise.all([rt.migration.stop(), rt.scoped?.back?.stop(), ...sessions.map((s) => s.quiesce())]), drainMs);
    let carried = 0;
    for (const s of sessions) {
      const c = s.detach();
      if (c === null) continue;
      this.host.carry(c);
      carried++;
    }
    return carried;
  }

  /** Closes a runtime's clients (in-flight commands get an error) and its upstream connections. */
  private async retire(rt: Runtime, why: string): Promise<void> {
    for (const s of [...rt.sessions]) s.fail(why);
    if (rt.keepalive !== null) clearInterval(rt.keepalive);
    rt.lanes?.close(why);
    await Promise.all([rt.migration.stop(), rt.scoped?.back?.stop()]);
    await Promise.all(rt.pools.map((p) => p.close()));
  }

  /**
   * A canary's parts: routing for its sessions and, when keys left the scope (a narrowing), the
   * reverse mover and the sweep that bring them home, on connections named for the epoch.
   */
  private async scopedParts(epoch: number, state: PhaseState): Promise<ScopedParts> {
    const { config, pair } = this.host;
    const rec = state.scope;
    const routing: ScopeRouting = {
      scope: rec.scope, returning: [...rec.returning], cameBack: [...rec.returning], back: null, old: config.source,
      connectTimeoutMs: config.connectTimeoutMs, counters: new ScopeCounters(),
    };
    if (rec.returning.length === 0) return { routing, back: null, pools: [] };
    const pools = this.parts.pools(epoch, config.target, config.source);
    try {
      const choice = await pair.methodFor('reverse', () => this.parts.probeConns(pools));
      routing.back = this.parts.mover(pools, config.source, true, choice.method, await this.parts.features(pools.target));
      const label = rec.returning.map(describeScope).join(' | ');
      // Every key on the new server outside the scope is one that left it: sweep those.
      const back = this.parts.migration(pools.source, routing.back, false, true, { kind: 'return', label }, null, rec.scope);
      return { routing, back, pools: pools.all };
    } catch (e) {
      await Promise.all(pools.all.map((p) => p.close()));
      throw e;
    }
  }

  /** The return sweep found no key outside the scope on the new server: the fleet is told. */
  private onReturned(rt: Runtime): void {
    const phases = this.host.pair.phases;
    const routing = rt.scoped!.routing;
    const list = encodeReturning(routing.returning);
    routing.returning = [];
    void phases?.markReturned(rt.epoch, list);
  }

  private onRuntimeDrained(rt: Runtime): void {
    const phases = this.host.pair.phases;
    if (rt.scoped !== null) {
      // A canary's scope drained: the phase stays migrate (keys outside it are on the old
      // server); the fleet hears it through the phase hash (onPhaseChange).
      if (phases && rt.phase === 'migrate') void phases.markScopeDrained(rt.epoch);
      return;
    }
    if (phases && (rt.phase === 'migrate' || rt.phase === 'reverse')) {
      // Tell every process: the phase becomes drained (or hold after a reverse).
      void phases.markDrained(rt.epoch, rt.phase);
    }
    if ((rt.phase === 'migrate' || rt.phase === 'drained') && !this.drainedFired) {
      this.drainedFired = true;
      for (const f of this.drainedListeners.splice(0)) f();
    }
  }

  /**
   * Switches the phase of every process on this pair (the fenced switch, src/phase/phase.ts).
   * The preconditions are decided inside the fence; the same checks made before it only spare
   * every client a reconnect when the answer is already no.
   */
  async switchPhase(to: SwitchablePhase, flags: ScopeFlags = NO_SCOPE_FLAGS): Promise<SwitchAnswer> {
    const c = this.host.pair.phases;
    if (!c) {
      throw new RehomeError('ENOPHASE', 'phases are not in use on this pair: start every rehome process with --phase hold|migrate');
    }
    const config = this.host.config;
    const scope = parseScope(flags.patterns, flags.dbs, this.host.pair.databases);
    // hold's check needs nothing from the phase of before, and refuses even when the phase is
    // hold already: keys on the new server are worth an error then too.
    if (to === 'hold') await switchPreconditions(config, to, null, false);
    const cur = (await c.fresh()) ?? c.state;
    // The same phase with the same scope: nothing to switch (a new scope is a switch: widen, narrow).
    if (cur.phase === to && (to !== 'migrate' || sameScope(cur.scope.scope, scope))) {
      return { from: cur.phase, to: cur.phase, epoch: cur.epoch, killed: 0, scope: describeScope(cur.scope.scope), returning: cur.scope.returning.map(describeScope) };
    }
    if (to !== 'hold') await switchPreconditions(config, to, lastActedPhase(cur), false);
    // A key may cross again (back after a reverse or a narrowed scope, then forward): the
    // proxy-side move's markers of earlier crossings go, on the server the new phase publishes
    // into (both at a scope switch), inside the fence (drop-markers.ts).
    const scoped = !isEverything(scope) || !isEverything(cur.scope.scope) || cur.scope.returning.length > 0;
    const dropOn = scoped ? [config.source, config.target] : to === 'migrate' ? [config.target] : to === 'reverse' ? [config.source] : [];
    const check = async (prev: PhaseName | null) => {
      await switchPreconditions(config, to, prev, true);
      if (dropOn.length === 0) return;
      const n = (await Promise.all(dropOn.map((ep) => dropMarkers(ep, config.connectTimeoutMs)))).reduce((a, b) => a + b, 0);
      if (n > 0) this.host.log(`phase switch to ${to}: ${n} publish-once markers of earlier moves deleted (a key may cross again)`);
    };
    const r = await c.switchTo(to, this.processId, check, config.switchDrainMs, scope).catch((e: Error) => {
      this.host.log(`phase switch to ${to} failed: ${e.message}`);
      throw e;
    });
    const scopeText = isEverything(r.scope.scope) ? '' : ` (scope ${describeScope(r.scope.scope)}${r.scope.returning.length > 0 ? `; coming back: ${r.scope.returning.map(describeScope).join(' | ')}` : ''})`;
    this.host.log(`phase switched ${r.from} -> ${to}${scopeText} (epoch ${r.epoch}); ${r.killed} connection(s) of older epochs killed`);
    return { from: r.from, to, epoch: r.epoch, killed: r.killed, scope: describeScope(r.scope.scope), returning: r.scope.returning.map(describeScope) };
  }

  /** Builds the runtime for a phase (null: no phases, migrate as a legacy proxy). */
  private async build(state: PhaseState | null): Promise<Runtime> {
    const { config, pair } = this.host;
    const phase: RuntimePhase = state === null ? 'migrate' : (state.phase as RuntimePhase);
    const epoch = state?.epoch ?? 0;
    // Which server keys move out of (source) and which one clients talk to (target).
    const reverse = phase === 'reverse' || phase === 'hold';
    const targetEndpoint = reverse ? config.source : config.target;
    const pools = this.parts.pools(epoch, reverse ? config.target : config.source, targetEndpoint);
    try {
      const table = await this.parts.table(pools.target);
      // Keys move only in migrate and reverse: hold and drained never probe the pair.
      const moving = phase === 'migrate' || phase === 'reverse';
      // Keys coming back: a direction not probed yet is probed without MIGRATE too.
      const comeBack = keysComeBack(state);
      const probed = moving ? await pair.methodFor(reverse ? 'reverse' : 'forward', () => this.parts.probeConns(pools), comeBack ? COME_BACK : null) : null;
      const choice = probed !== null && comeBack ? withoutMigrate(probed) : probed;
      const mover = this.parts.mover(pools, targetEndpoint, reverse, choice?.method ?? 'migrate', await this.parts.features(pools.target));
      const phases = pair.phases;
      const fence: SessionFence | null = phases ? { epoch, verify: () => phases.verify(epoch) } : null;
      const lanes = config.sharedConnections > 0 ? new SharedLanes(config.sharedConnections, targetEndpoint, fence, this.host.counters, config.keepaliveMs) : null;
      const sessions = new Set<Session>();
      const observer = this.host.observer;
      const scoped = phase === 'migrate' && state !== null && !isEverything(state.scope.scope)
        ? await this.scopedParts(epoch, state)
        : null;
      if (scoped !== null) pools.all.push(...scoped.pools);
      const ctx: SessionContext = {
        table,
        mover,
        source: pools.source,
        target: pools.target,
        targetEndpoint,
        targetAuthRequired: reverse ? pair.authRequired.old : pair.authRequired.new,
        databases: pair.databases,
        limits: config.limits,
        clientLimits: config.clientLimits,
        log: this.host.log,
        maxPending: config.maxPendingPerClient,
        onClose: (handle) => {
          const s = handle as Session; // sessions are the only handles there are
          closeOldSide(s);
          this.host.sessionClosed(s);
          sessions.delete(s);
        },
        counters: this.host.counters,
        lanes,
        observeLatency: observer ? (sec) => observer.observeCommand(sec) : () => {},
        fence,
        // The phase key is on the old server: hidden wherever a client reads the old server.
        hideSide: phases === null ? null : phase === 'migrate' ? 'source' : phase === 'drained' ? null : 'target',
        scope: scoped?.routing ?? null,
      };
      const passThrough = phase === 'hold' || phase === 'drained';
      const moves = choice === null ? null : { reverse, choice };
      const part = scoped === null ? null : { kind: 'scope' as const, label: describeScope(scoped.routing.scope) };
      const rt: Runtime = { phase, epoch, ctx, migration: this.parts.migration(pools.source, mover, passThrough, reverse, part, scoped?.routing.scope ?? null), pools: pools.all, sessions, lanes, keepalive: null, moves, scoped };
      // The first runtime's line follows the start-up line (server.ts), after the proxy listens.
      if (moves !== null && this.started) this.host.log(movesLine(moves));
      if (!passThrough) await rt.migration.start();
      if (scoped?.back) {
        await scoped.back.start();
        scoped.back.onDrained(() => this.onReturned(rt));
      }
      // In hold clients talk to the old server (the target here): count what a migrate would move.
      if (phase === 'hold') await rt.migration.countWaiting(pools.target);
      rt.migration.onDrained(() => this.onRuntimeDrained(rt));
      // Found drained by the fleet before this runtime was built (a process started or restarted late).
      if (phases !== null) this.takeScopeDrained(rt, phases.state);
      rt.keepalive = this.keepOwnConnectionsAlive(rt);
      return rt;
    } catch (e) {
      await Promise.all(pools.all.map((p) => p.close()));
      throw e;
    }
  }

  /** The runtime's control connections, named for its epoch and checked against the phase. */
  /**
   * A client working on the shared lanes leaves its own connection idle: PING it under the
   * server's `timeout` (Session.keepOwnAlive). Null when there are no lanes or no keepalive.
   */
  private keepOwnConnectionsAlive(rt: Runtime): NodeJS.Timeout | null {
    const every = this.host.config.keepaliveMs;
    if (rt.lanes === null || every <= 0) return null;
    const t = setInterval(() => {
      for (const s of rt.sessions) s.keepOwnAlive();
    }, every);
    t.unref();
    return t;
  }

}
