/**
 * A running proxy: it listens, accepts each client into a Session of the runtime in effect,
 * reports its status, and stops gracefully. What it checks before serving is startup.ts's; what
 * serves one phase at one epoch, and the switch between them, is runtime.ts's.
 */
import net from 'node:net';
import type tls from 'node:tls';
import type { ProxyConfig } from '../config.js';
import { RehomeError } from '../errors.js';
import type { Migration } from '../migration/migration.js';
import { MOVE_ERROR_KINDS, type Mover } from '../migration/mover.js';
import type { SweepChange } from '../phase/fleet-record.js';
import type { PhaseController, ProcessView, SwitchablePhase } from '../phase/phase.js';
import { describeEndpoint } from '../upstream/endpoint.js';
import { IdleReaper, refuseConnection } from '../session/limits.js';
import { changeSweeper, FleetView, type SweeperAnswer } from './fleet.js';
import { movesLine, type ProxyCounters, type ProxyObserver, Runtimes, type SwitchAnswer } from './runtime.js';
import { NO_SCOPE_FLAGS, type ScopeFlags } from '../phase/scope.js';
import type { Carried } from '../session/carry.js';
import { Session } from '../session/session.js';
import { withClusterTarget } from '../cluster/target.js';
import { checkPair, holdLines, type Logger, type Pair } from './startup.js';
import { scopeFigures, scopeStatus } from './scope-status.js';
import { createPlainServer } from './plain-listener.js';
import { createTlsServer, reloadTls } from './tls-listener.js';
import { settledWithin } from '../util/settled-within.js';

export type { Logger } from './startup.js';
export type { ProxyObserver } from './runtime.js';

/** An endpoint started beside the proxy (the admin endpoint): in the fleet view, closed with the proxy. */
export interface AdminEndpoint {
  address(): { host: string; port: number };
  close(): void;
}

/** How the proxy is started; the hooks let the layers above it (src/start.ts) plug in. */
export interface StartOptions {
  /**
   * false skips the checks of `rehome plan` (and their --on-conflict resolution): for a worker
   * process started while other workers of the same proxy already serve clients.
   */
  preflight?: boolean;
  observer?: ProxyObserver;
  /**
   * Started once the proxy listens and before its first runtime (nothing has moved yet), so the
   * fleet view names its address; a rejection stops the proxy and is start's error. Until the
   * runtime is built, status says 'starting' and readiness is false.
   */
  startAdmin?: (proxy: RehomeProxy) => Promise<AdminEndpoint>;
  /**
   * Called once the proxy serves (--listen and the admin endpoint were bound before any key
   * moved), before any log line of its runtime: where the listening line is printed.
   */
  listening?: (proxy: RehomeProxy) => void;
}

/** A running proxy. */
export class RehomeProxy {
  private readonly sessions = new Set<Session>();
  private readonly runtimes: Runtimes;
  private readonly counters: ProxyCounters = { commands: 0, sharedCommands: 0, sharedFailures: 0 };
  /**
   * Clients that connected while the phase was fencing, and clients carried over the switch
   * (src/session/carry.ts): they wait, unread, for the new runtime.
   */
  private readonly pending = new Set<net.Socket>();
  private readonly carried = new Map<net.Socket, Carried>();
  private admin: AdminEndpoint | null = null;
  private nextId = 1;
  private stopping: Promise<void> | null = null;
  /** Closes idle clients (--timeout); null when off. */
  private idle: IdleReaper | null = null;
  /** The fleet as one, for status (refreshed every second with phases on). */
  private readonly fleet: FleetView | null;
  /** False until the first runtime is built: the ports are bound, nothing is served or moved yet. */
  private started = false;
  /** The plain port (null with --listen none) and the TLS port (--tls-port): one accept path. */
  private readonly server: net.Server | null;
  private readonly tlsServer: tls.Server | null;

  private constructor(
    readonly config: ProxyConfig,
    private readonly log: Logger,
    private readonly pair: Pair,
    observer: ProxyObserver | null,
  ) {
    this.runtimes = new Runtimes({
      config,
      log,
      pair,
      observer,
      counters: this.counters,
      closing: () => this.stopping !== null,
      sessionClosed: (s) => this.sessions.delete(s),
      resumeWaiting: () => this.resumeWaiting(),
      dropWaiting: (why) => this.failPending(why),
      carry: (c) => this.carry(c),
    });
    if (pair.phases) pair.phases.view = () => this.processView();
    this.fleet = pair.phases ? new FleetView(pair.phases, config, this.runtimes) : null;
    this.server = config.listen ? createPlainServer((sock) => this.accept(sock)) : null;
    this.tlsServer = config.tls ? createTlsServer(config.tls, (sock) => this.accept(sock)) : null;
  }

  /**
   * Starts a proxy; the admin endpoint and the metrics come from the caller (src/start.ts).
   *
   * Order: check the pair, bind --listen, start the admin endpoint, and only then build the
   * first runtime, whose sweeper may move keys (and even finish the migration) at once. A port in
   * use thus fails start before any key moved. Clients that connect meanwhile wait, unread, for
   * the runtime, as they do during a phase switch. The runtime's log lines are held until the
   * listening line (opts.listening) is out, so that no line about moves comes before it: the
   * port was bound before any of them happened.
   */
  static async start(given: ProxyConfig, log: Logger = () => {}, opts: StartOptions = {}): Promise<RehomeProxy> {
    // A cluster target: every connection to the target goes through the cluster front.
    const config = await withClusterTarget(given, given.limits);
    const pair = await checkPair(config, log, opts.preflight !== false).catch(async (e: unknown) => {
      await config.cluster?.close();
      throw e;
    });
    const held = holdLines(log);
    let p: RehomeProxy | null = null;
    try {
      p = new RehomeProxy(config, held.log, pair, opts.observer ?? null);
      await p.listen();
      if (opts.startAdmin) await p.startAdmin(opts.startAdmin);
      const rt = await p.runtimes.start();
      p.started = true;
      p.resumeWaiting();
      p.idle = new IdleReaper(config.clientLimits.idleTimeoutMs, () => p!.sessions);
      p.idle.start();
      p.joinFleet();
      log(
        `source ${describeEndpoint(config.source)} (redis ${pair.versions.source}), target ${describeEndpoint(config.clusterSeed ?? config.target)}${config.cluster ? ` (a cluster of ${config.cluster.masters().length} masters)` : ''} (redis ${pair.versions.target}), ${rt.ctx.table.size} commands, ${pair.databases} dbs` +
          (pair.phases ? `; phase ${rt.phase} (epoch ${rt.epoch})` : ''),
      );
      if (rt.moves !== null) log(movesLine(rt.moves));
      opts.listening?.(p);
      held.release();
      return p;
    } catch (e) {
      held.release();
      if (p) await p.abortStart();
      await pair.phases?.close();
      await config.cluster?.close();
      throw e;
    }
  }

  /** Start failed after the ports were bound: unbind them and close the clients that waited. */
  private async abortStart(): Promise<void> {
    this.server?.close();
    this.tlsServer?.close();
    this.admin?.close();
    this.failPending('');
    await this.runtimes.stop();
  }

  /** Listens on --listen and --tls-port; if it cannot, start fails (before any runtime exists). */
  private async listen(): Promise<void> {
    const { server, tlsServer, config } = this;
    // A failure here is start's: abortStart unbinds whatever did bind.
    if (server && config.listen) {
      await this.listenOn(server, config.listen, '');
    }
    if (tlsServer && config.tls) await this.listenOn(tlsServer, config.tls, 'TLS ');
    if (tlsServer) this.log(`TLS clients on ${describeEndpoint(this.tlsAddress()!)} (client certificates: ${config.tls!.authClients})`);
  }

  private async listenOn(server: net.Server, at: { host: string; port: number }, what: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => {
        const why = e.code === 'EADDRINUSE' ? 'address already in use' : e.message;
        reject(new RehomeError('ELISTEN', `cannot listen on ${what}${describeEndpoint(at)}: ${why}`));
      });
      server.listen(at.port, at.host, () => resolve());
    });
    server.on('error', (e) => this.log(`server error: ${e.message}`));
  }

  /** SIGHUP: serves the TLS certificate files as they are now; logs what happened. */
  reloadTls(): void {
    if (this.tlsServer && this.config.tls) this.log(reloadTls(this.tlsServer, this.config.tls));
  }

  private async startAdmin(start: NonNullable<StartOptions['startAdmin']>): Promise<void> {
    this.admin = await start(this);
  }

  /** Starts reading the shared phase, and the fleet's state for status. */
  private joinFleet(): void {
    this.pair.phases?.start();
    this.fleet?.start();
  }

  /** This process as the others see it in the phase record. */
  private processView(): Omit<ProcessView, 'id' | 'seen_at'> {
    const rt = this.runtimes.current;
    const admin = this.adminAddress();
    return {
      phase: rt?.phase ?? 'fencing',
      epoch: rt?.epoch ?? this.pair.phases!.state.epoch,
      clients: this.sessions.size,
      listen: describeEndpoint(this.address()),
      admin: admin ? describeEndpoint(admin) : null,
      sweeper: this.migration.sweeper?.state ?? (this.config.sweep ? 'idle' : 'disabled'),
    };
  }

  private accept(sock: net.Socket): void {
    if (this.stopping) {
      sock.destroy();
      return;
    }
    if (this.sessions.size + this.pending.size + this.carried.size >= this.config.clientLimits.maxClients) {
      refuseConnection(sock);
      return;
    }
    const rt = this.runtimes.current;
    if (rt === null) {
      // A switch is under way: the client waits (unread) for the new phase.
      sock.pause();
      this.pending.add(sock);
      sock.on('close', () => this.pending.delete(sock));
      sock.on('error', () => sock.destroy());
      return;
    }
    const s = new Session(sock, rt.ctx, this.nextId++);
    this.sessions.add(s);
    rt.sessions.add(s);
  }

  private carry(c: Carried): void {
    const sock = c.client;
    sock.pause();
    this.carried.set(sock, c);
    sock.on('close', () => this.carried.delete(sock));
    sock.on('error', () => sock.destroy());
  }

  /** A new runtime is in effect: the clients that waited for it become its sessions. */
  private resumeWaiting(): void {
    const rt = this.runtimes.current;
    for (const [sock, c] of [...this.carried]) {
      if (rt === null || this.stopping) break;
      this.carried.delete(sock);
      sock.removeAllListeners('close');
      sock.removeAllListeners('error');
      const s = new Session(sock, rt.ctx, c.id, c);
      this.sessions.add(s);
      rt.sessions.add(s);
    }
    for (const sock of [...this.pending]) {
      this.pending.delete(sock);
      this.accept(sock);
      sock.resume();
    }
  }

  private failPending(why: string): void {
    for (const sock of [...this.carried.keys()]) sock.destroy();
    this.carried.clear();
    for (const sock of [...this.pending]) {
      this.pending.delete(sock);
      sock.destroy();
    }
    if (why) this.log(`clients waiting for the phase were closed: ${why}`);
  }

  /** Calls `f` once the migration has drained the old server (now, if it has). */
  onDrained(f: () => void): void {
    this.runtimes.onDrained(f);
  }

  /** Switches the phase of every process on this pair (the fenced switch: Runtimes.switchPhase). */
  switchPhase(to: SwitchablePhase, scope: ScopeFlags = NO_SCOPE_FLAGS): Promise<SwitchAnswer> {
    return this.runtimes.switchPhase(to, scope);
  }

  /**
   * Changes the sweeper's rate or pause: the fleet's with phases (whether this process sweeps
   * or not), else this process's own (src/proxy/fleet.ts).
   */
  setSweeper(change: SweepChange): Promise<SweeperAnswer> {
    const idle = !this.config.sweep ? '--no-sweep' : this.runtimes.current === null ? 'a phase switch is under way' : `phase ${this.phaseName}: nothing moves`;
    // Named as in the fleet's rows (`proc:<id>`).
    return changeSweeper(this.pair.phases, this.migration, change, this.pair.phases?.id ?? this.processId, idle);
  }

  /** The address actually listened on: the plain port's, or with --listen none the TLS port's. */
  address(): { host: string; port: number } {
    const a = (this.server ?? this.tlsServer)!.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** The TLS port's address, if it listens. */
  tlsAddress(): { host: string; port: number } | null {
    const a = this.tlsServer?.address() as net.AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : null;
  }

  /** The admin endpoint's address, if one is listening. */
  adminAddress(): { host: string; port: number } | null {
    return this.admin?.address() ?? null;
  }

  get clients(): number {
    return this.sessions.size;
  }

  /** The fleet's shared phase; null without phases. */
  get phases(): PhaseController | null {
    return this.pair.phases;
  }

  get versions(): { source: string; target: string } {
    return this.pair.versions;
  }

  /** This process in the phase record (`by` of a switch it made). */
  get processId(): string {
    return this.runtimes.processId;
  }

  /** The current phase's migration (the last one while a switch is under way). */
  get migration(): Migration {
    if (!this.started) throw new RehomeError('ESTARTING', 'rehome is starting: the first phase is being set up; try again in a moment');
    return this.runtimes.migration;
  }

  get mover(): Mover {
    return this.migration.mover;
  }

  /** The phase as status shows it: migrating|drained without phases, else the shared phase. */
  get phaseName(): string {
    if (!this.pair.phases) return this.migration.phase;
    return this.runtimes.current?.phase ?? 'fencing';
  }

  /** The figures /metrics exports, read when it is scraped. */
  figures() {
    if (!this.started) return { ...STARTING_FIGURES, ...this.counters, clients: this.sessions.size };
    const m = this.migration;
    const st = m.mover.stats;
    return {
      ...this.counters,
      clients: this.sessions.size,
      movedOnTouch: st.keysMovedOnTouch,
      movedBySweeper: st.keysMovedBySweeper,
      remainingPerDb: m.remainingPerDb,
      drained: m.phase === 'drained' && !this.runtimes.current?.scoped,
      scope: scopeFigures(this.runtimes.current),
      rate: m.rate,
      errorsByKind: { ...ZERO_ERRORS, ...st.errorsByKind },
      moveFailures: st.failures,
      cacheSize: m.mover.cache.size,
      bigKeys: m.sweeper?.bigKeysTotal ?? 0,
      phase: this.phaseName,
      epoch: this.pair.phases?.state.epoch ?? 0,
    };
  }

  /**
   * Whether clients are served in the current phase right now (/readyz): listening, not stopping,
   * no switch under way, the phase read from the old server lately, and the server keys move
   * out of answering while something is left to move.
   */
  readiness(): { ready: boolean; reason: string | null; phase: string; epoch: number | null } {
    const c = this.pair.phases;
    const rt = this.runtimes.current;
    const phase = this.phaseName;
    const epoch = c ? (rt?.epoch ?? c.state.epoch) : null;
    const not = (reason: string) => ({ ready: false, reason, phase, epoch });
    if (this.stopping) return not('shutting down: no longer accepting clients');
    const down = [this.server, this.tlsServer].find((s) => s !== null && !s.listening);
    if (down) return not(`not listening on ${describeEndpoint(down === this.server ? this.config.listen! : this.config.tls!)}`);
    if (!this.started) return not('starting: the first phase is being set up; clients wait for it');
    if (rt === null || c?.state.phase === 'fencing') return not('a phase switch is under way: new clients wait for the next phase');
    const problem = c?.readProblem() ?? null;
    if (problem !== null) return not(problem);
    const m = this.migration;
    if (m.watch?.reachable === false && m.phase !== 'drained') {
      return not(`the ${rt.phase === 'reverse' ? 'new' : 'old'} server, which keys move out of, does not answer`);
    }
    return { ready: true, reason: null, phase, epoch };
  }

  /** Where the migration stands, for /status and `rehome status`. */
  status(): Record<string, unknown> {
    if (!this.started) {
      return { phase: 'starting', source: describeEndpoint(this.config.source), target: describeEndpoint(this.config.target), versions: this.versions, clients: this.pending.size };
    }
    const m = this.migration;
    const st = m.mover.stats;
    const rt = this.runtimes.current;
    const c = this.pair.phases;
    return {
      phase: this.phaseName,
      epoch: c ? (rt?.epoch ?? c.state.epoch) : null,
      phases: c
        ? {
            shared: { phase: c.state.phase, epoch: c.state.epoch, next: c.state.next, since: new Date(c.state.since).toISOString(), by: c.state.by },
            processes: this.fleet?.processes ?? [],
            read_error: c.error || null,
          }
        : null,
      process_id: c?.id ?? null,
      // The whole fleet: keys left read from the server itself, rate and ETA from the sweeper.
      fleet: this.fleet?.section() ?? null,
      direction: rt?.phase === 'reverse' ? 'new -> old' : rt?.phase === 'migrate' || !c ? 'old -> new' : null,
      source: describeEndpoint(this.config.source),
      target: describeEndpoint(this.config.clusterSeed ?? this.config.target),
      // A cluster as the new server: keys per master (src/cluster/front.ts).
      cluster: this.config.cluster?.status() ?? null,
      versions: this.versions,
      uptime_s: Math.round((Date.now() - m.startedAt) / 1000),
      keys: {
        initial_in_source: m.initialKeys,
        remaining_total: m.remainingTotal,
        remaining_per_db: m.remainingPerDb,
        moved_on_touch: st.keysMovedOnTouch,
        moved_by_sweeper: st.keysMovedBySweeper,
        confirmed_absent: st.keysAbsent,
        in_both_resolved: st.resolvedBoth,
        known_absent_cached: m.mover.cache.size,
        // Hold moves nothing: the old server's keys are what a switch to migrate would move.
        waiting_for_migrate: this.phaseName === 'hold' && m.waitingPerDb !== null
          ? { total: Object.values(m.waitingPerDb).reduce((a, b) => a + b, 0), per_db: m.waitingPerDb }
          : null,
      },
      rate_keys_per_s: Math.round(m.rate),
      eta_s: m.etaSeconds,
      // A canary's scope drained is not drained: keys outside it are still on the old server.
      drained_at: m.drainedAt && m.phase === 'drained' && this.phaseName !== 'hold' && !rt?.scoped ? new Date(m.drainedAt).toISOString() : null,
      scope: scopeStatus(rt, c?.state ?? null),
      ...sweeperStatus(m, this.phaseName, this.config.sweep),
      errors_by_kind: st.errorsByKind,
      move_failures: st.failures,
      migrate_calls: st.migrateCalls,
      source_restarted: m.sourceRestarted
        ? { at: new Date(m.sourceRestarted.at).toISOString(), run_id: m.sourceRestarted.after.runId }
        : null,
      source_reachable: m.watch?.reachable ?? true,
      clients: this.sessions.size,
      shared_connections: rt?.lanes?.stats() ?? null,
    };
  }

  /** Stops accepting, lets in-flight commands finish (up to the timeout), then closes. */
  close(timeoutMs = this.config.shutdownTimeoutMs): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      this.server?.close();
      this.tlsServer?.close();
      this.idle?.stop();
      this.admin?.close();
      await this.fleet?.stop();
      this.failPending('');
      for (const s of this.sessions) s.shutdown();
      const deadline = Date.now() + timeoutMs;
      while (this.sessions.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      if (this.sessions.size > 0) {
        this.log(`closing ${this.sessions.size} client(s) with commands still in flight`);
        for (const s of [...this.sessions]) s.destroy();
      }
      const rest = (async () => {
        await this.runtimes.stop();
        await this.pair.phases?.close();
        await this.config.cluster?.close();
      })();
      // A move waiting on a server that does not answer (stopped, cut off) would hold the exit
      // for its own timeout. Leaving it is what a killed process does: its claims lapse and
      // another mover takes them over, and a MIGRATE is all or nothing in the old server.
      if (!(await settledWithin(rest, Math.max(1_000, deadline - Date.now())))) {
        this.log('moves in flight did not stop within the shutdown timeout; leaving them (their claims lapse, and another process or the next start takes them over)');
      }
    })();
    return this.stopping;
  }
}

/** Every move error kind at 0: /metrics shows each series from the start. */
const ZERO_ERRORS: Record<string, number> = Object.fromEntries(MOVE_ERROR_KINDS.map((k) => [k, 0]));

/** /metrics before the first runtime: every series present, nothing moved yet. */
const STARTING_FIGURES = {
  movedOnTouch: 0,
  movedBySweeper: 0,
  remainingPerDb: {} as Record<number, number>,
  drained: false,
  rate: 0,
  errorsByKind: ZERO_ERRORS,
  moveFailures: 0,
  cacheSize: 0,
  bigKeys: 0,
  phase: 'starting',
  epoch: 0,
};

/**
 * The sweeper's part of the status (its keys keep their place in the JSON). Without a sweeper
 * at work: 'disabled' only for --no-sweep; in hold (also the reverse runtime that became hold)
 * and drained it is 'idle', with the reason.
 */
function sweeperStatus(m: Migration, phase: string, sweep: boolean): { sweeper: Record<string, unknown>; big_keys: Record<string, unknown> } {
  const sw = m.sweeper;
  const bigKeys = { total: sw?.bigKeysTotal ?? 0, listed: sw?.bigKeys ?? [] };
  if (!sweep) return { sweeper: { state: 'disabled', idle_reason: '--no-sweep' }, big_keys: bigKeys };
  if (phase === 'hold') {
    return { sweeper: { state: 'idle', idle_reason: 'nothing moves in hold; rehome phase migrate starts it' }, big_keys: bigKeys };
  }
  if (!sw) return { sweeper: { state: 'idle', idle_reason: 'drained: nothing left to move' }, big_keys: bigKeys };
  return {
    sweeper: {
      state: sw.state,
      pause_reason: sw.pauseReason || null,
      batch_size: sw.batchSize,
      budget_ms: sw.opts.budgetMs,
      touch_budget_ms: sw.opts.touchBudgetMs,
      small_steps_for_touches: sw.smallSteps,
      rate_limit: sw.opts.rate || null,
      errors: sw.errors,
      last_error: sw.lastError || null,
    },
    big_keys: { total: sw.bigKeysTotal, listed: sw.bigKeys },
  };
}
