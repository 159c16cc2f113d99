/**
 * What a proxy finds out and checks before it serves anyone: both servers answer and are not the
 * same server, whether a fresh connection must AUTH, how many dbs the target has, the shared
 * phase, and the pre-flight checks of `rehome plan`; also the checks a phase switch makes again
 * inside its fence. The only proxy file that runs the plan (src/tools/plan.ts).
 */
import os from 'node:os';
import type { ProxyConfig } from '../config.js';
import { RehomeError } from '../errors.js';
import { fencedName, PhaseController, type PhaseName, type SwitchablePhase } from '../phase/phase.js';
import { keysComeBack } from '../phase/moving-now.js';
import { PING_REQUEST } from '../resp/request-framer.js';
import { probeMoveMethod, type MethodChoice, type MoveMethodName } from '../tools/move-method.js';
import { formatPlanReport, plan, type PlanOptions, type PlanResult } from '../tools/plan.js';
import { closeServer, describeRole, openServer, type Role, type ServerConn } from '../tools/scan-both.js';
import { connectSocket, connectedEvent } from '../upstream/connect.js';
import { ControlPool } from '../upstream/control.js';
import type { Endpoint } from '../upstream/endpoint.js';

export type { MethodChoice, MoveMethodName };

/**
 * Logging sink (the CLI prints; tests may collect). `fields` are for structured logs
 * (--log-format json) and repeat what the line says.
 */
export type Logger = (line: string, fields?: Record<string, unknown>) => void;

/**
 * A logger that holds its lines until release(), then passes them (and every later one) through:
 * start holds the first runtime's lines until the listening line is out.
 */
export function holdLines(log: Logger): { log: Logger; release(): void } {
  let held: Array<Parameters<Logger>> | null = [];
  return {
    log: (line, fields) => {
      if (held === null) log(line, fields);
      else held.push([line, fields]);
    },
    release: () => {
      const lines = held ?? [];
      held = null;
      for (const [line, fields] of lines) log(line, fields);
    },
  };
}

/** What start found out about the pair, fixed for the proxy's life. */
export interface Pair {
  versions: { source: string; target: string };
  /** Per server: a fresh connection must AUTH first (reverse talks to the old one). */
  authRequired: { old: boolean; new: boolean };
  /** The target's `databases` (Redis's 16 where CONFIG is refused). */
  databases: number;
  /** The fleet's shared phase; null: no phases, a proxy that always migrates. */
  phases: PhaseController | null;
  /**
   * How keys move old -> new (migrate) and new -> old (reverse): --move-method, or auto's probe
   * on `open`'s connections. With `noMigrate` (why not), a direction not probed yet is probed
   * from DUMP/RESTORE on, and that answer is not kept.
   */
  methodFor(direction: Direction, open: () => ProbeConns, noMigrate?: string | null): Promise<MethodChoice>;
}

export type Direction = 'forward' | 'reverse';

/**
 * The two servers a direction's probe uses: the one keys move out of and the one they move into,
 * on connections of the runtime's pools. Named for its epoch and checked against the phase, they
 * are killed by the next switch before any process moves keys the other way, so a probe that
 * outlasts its phase never MIGRATEs against the moves of the next one (docs/DESIGN.md, "One
 * direction at a time").
 */
export interface ProbeConns {
  from: ServerConn;
  to: ServerConn;
  close(): Promise<void>;
}

/** ProbeConns on dedicated connections of the pools (`from`: the pool of the server keys leave). */
export function probeConns(from: ControlPool, to: ControlPool, timeoutMs: number): ProbeConns {
  const conn = (p: ControlPool): ServerConn => ({ role: p.role, endpoint: p.endpoint, redis: p.dedicated(0, timeoutMs), authWarning: null });
  const a = conn(from);
  const b = conn(to);
  return {
    from: a,
    to: b,
    close: async () => {
      await Promise.all([a, b].map((c) => c.redis.quit().catch(() => c.redis.disconnect())));
    },
  };
}

/**
 * Checks the pair and opens its phases. `preflight` false skips the checks of `rehome plan`. On
 * success the caller owns `phases` and closes it; on failure it is closed here.
 */
export async function checkPair(config: ProxyConfig, log: Logger, preflight: boolean): Promise<Pair> {
  const probes = await Promise.allSettled([
    probeServer('source', config.source, config.connectTimeoutMs),
    probeServer('target', config.target, config.connectTimeoutMs),
  ]);
  const failed = probes.filter((p): p is PromiseRejectedResult => p.status === 'rejected').map((p) => p.reason as Error);
  if (failed.length > 0) {
    // Both causes on one line, as plan reports both servers.
    const first = failed[0]!;
    if (failed.length === 1) throw first;
    throw new RehomeError(first instanceof RehomeError ? first.code : 'EUPSTREAM', failed.map((e) => e.message).join('; '));
  }
  const [src, tgt] = probes.map((p) => (p as PromiseFulfilledResult<{ runId: string; version: string }>).value) as [
    { runId: string; version: string },
    { runId: string; version: string },
  ];
  if (src.runId !== '' && src.runId === tgt.runId) {
    throw new RehomeError('ESAME', 'source and target are the same server (same run_id)');
  }
  const phases = await openPhases(config, log);
  try {
    // Only for a migration: hold moves nothing yet, and a switch to migrate runs them then.
    const s = phases?.state;
    let pre: PlanResult | null = null;
    if (preflight && (!s || s.phase === 'migrate' || (s.phase === 'fencing' && s.next === 'migrate'))) {
      // In migrate the probe goes the way keys move, on connections the next switch kills (the
      // epoch's name, checked once named); none while keys come back new -> old by MIGRATE (a
      // narrowed canary) or while fencing (the switch's own check probes).
      const fence = phases && s?.phase === 'migrate' ? { name: fencedName(s.epoch, 'plan'), check: () => phases.verify(s.epoch) } : undefined;
      const probes = s?.phase === 'fencing' || keysComeBack(s ?? null) ? 'none' : 'forward';
      pre = await runPreflight(config, log, probes, fence);
    }
    const authRequired = {
      old: await needsAuth('source', config.source, config.connectTimeoutMs),
      new: await needsAuth('target', config.target, config.connectTimeoutMs),
    };
    // The plan read it already (a connection less at start), unless it could not.
    const databases = pre?.targetDatabases ?? (await targetDatabases(config));
    const methodFor = moveMethods(config, pre?.methods.forward ?? null);
    return { versions: { source: src.version, target: tgt.version }, authRequired, databases, phases, methodFor };
  } catch (e) {
    await phases?.close();
    throw e;
  }
}

/**
 * --move-method, or with auto the method each direction's probe picks (as `rehome plan` reports
 * it): MIGRATE, then DUMP/RESTORE, then the type-aware copy. A direction is probed when a runtime
 * first moves keys that way (never in hold: the new server is not touched there), on the
 * runtime's connections (ProbeConns); the pre-flight plan's probe of old -> new is reused. A
 * probe that is inconclusive (an error that says nothing about the method, such as a target out
 * of memory, or its connection cut by a phase switch) keeps MIGRATE, as rehome did before it had
 * other methods, and the next runtime probes again.
 */
function moveMethods(config: ProxyConfig, probed: MethodChoice | null): Pair['methodFor'] {
  const forced = config.moveMethod;
  const chosen = new Map<Direction, MethodChoice>();
  if (probed !== null) chosen.set('forward', probed);
  return async (which, open, noMigrate = null) => {
    if (forced !== 'auto') return { method: forced, reason: `--move-method ${forced}` };
    const known = chosen.get(which);
    if (known !== undefined) return known;
    try {
      const c = await probeDirection(config, which, open, noMigrate);
      if (noMigrate === null) chosen.set(which, c);
      return c;
    } catch (e) {
      return { method: 'migrate', reason: `the probe was inconclusive (${(e as Error).message.split('\n')[0]})` };
    }
  };
}

/** One direction's probe: old -> new (forward) or new -> old (reverse, roles swapped). */
async function probeDirection(config: ProxyConfig, which: Direction, open: () => ProbeConns, noMigrate: string | null): Promise<MethodChoice> {
  const { from, to, close } = open();
  try {
    if (which === 'forward') {
      const dest = config.targetFromSource ?? config.target;
      const cluster = config.cluster;
      return await probeMoveMethod(from, to, cluster ? (k) => cluster.nodeForKey(k) : { host: dest.host, port: dest.port }, config.target, noMigrate);
    }
    const dest = config.sourceFromTarget ?? config.source;
    return await probeMoveMethod(from, to, { host: dest.host, port: dest.port }, config.source, noMigrate);
  } finally {
    await close();
  }
}

/**
 * This proxy's name in the fleet's phase record: host and pid, and a number from the second proxy
 * of one process on (the test suite runs several in one process; each must count as a member).
 */
let proxiesStarted = 0;
function fleetMemberId(): string {
  proxiesStarted++;
  return `${os.hostname()}:${process.pid}${proxiesStarted > 1 ? `:${proxiesStarted}` : ''}`;
}

/** The phase key on the old server decides; --phase creates it only where it is missing. */
async function openPhases(config: ProxyConfig, log: Logger): Promise<PhaseController | null> {
  const phases = await PhaseController.open(
    {
      old: config.source,
      new: config.target,
      id: fleetMemberId(),
      pollMs: config.phasePollMs,
      connectTimeoutMs: config.connectTimeoutMs,
      sweepRate: config.sweepRate,
    },
    config.phase,
  );
  if (phases && config.phase !== null && phases.state.phase !== config.phase && phases.state.phase !== 'fencing') {
    log(`the old server's phase key says ${phases.state.phase} (epoch ${phases.state.epoch}); --phase ${config.phase} applies only to a fresh deployment`);
  }
  const sw = phases?.settings;
  if (sw && sw.rate !== null && sw.rate !== config.sweepRate) {
    log(`the fleet's sweeper rate is ${sw.rate === 0 ? 'unlimited' : `${sw.rate} keys/s`} (stored on the old server${sw.by ? `, set by ${sw.by}` : ''}); --sweep-rate ${config.sweepRate} applies only when the fleet has none: rehome sweeper rate N changes it`);
  }
  if (sw?.paused) log(`the fleet's sweeper is paused (${sw.paused}): rehome sweeper resume starts it`);
  return phases;
}

/**
 * Connects once, without retries, with plan's connection (openServer), so that start-up names an
 * unreachable server, an unknown host and refused credentials in plan's words.
 */
async function probeServer(role: Role, ep: Endpoint, timeoutMs: number): Promise<{ runId: string; version: string }> {
  const c = await openServer(role, ep, { connectTimeoutMs: timeoutMs, commandTimeoutMs: timeoutMs * 2 });
  try {
    const text = await c.redis.info('server');
    const runId = /run_id:(\w+)/.exec(text)?.[1] ?? '';
    const version = /redis_version:([\d.]+)/.exec(text)?.[1] ?? 'unknown';
    return { runId, version };
  } catch (e) {
    throw new RehomeError('EUPSTREAM', `${describeRole(role, ep)} unreachable: ${(e as Error).message.split('\n')[0]}`);
  } finally {
    closeServer(c);
  }
}

/**
 * True when a fresh, unauthenticated connection to the server is refused commands. A raw socket,
 * since a client library would send the endpoint's credentials first.
 */
function needsAuth(role: Role, ep: Endpoint, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const sock = connectSocket(ep);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new RehomeError('EUPSTREAM', `${describeRole(role, ep)} did not answer PING`));
    }, timeoutMs);
    sock.on(connectedEvent(ep), () => sock.write(PING_REQUEST));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) {
        clearTimeout(timer);
        sock.destroy();
        resolve(buf.startsWith('-NOAUTH'));
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(new RehomeError('EUPSTREAM', `${describeRole(role, ep)} unreachable: ${e.message}`));
    });
  });
}

/** The target's number of dbs: SELECT and the keyspace-wide commands range over them. */
async function targetDatabases(config: ProxyConfig): Promise<number> {
  const probe = new ControlPool(config.target, { commandTimeoutMs: config.connectTimeoutMs * 2, connectTimeoutMs: config.connectTimeoutMs }, 'target');
  try {
    const r = (await probe.db(0).call('CONFIG', 'GET', 'databases')) as string[];
    if (r.length === 2 && Number(r[1]) > 0) return Number(r[1]);
  } catch {
    // CONFIG may be renamed or denied by ACL: keep Redis's default.
  } finally {
    await probe.close();
  }
  return 16;
}

/** The pre-flight checks of `rehome plan`, conflicts resolved as --on-conflict says. */
async function runPreflight(config: ProxyConfig, log: Logger, migrateProbes: 'forward' | 'none', fence: PlanOptions['fence']): Promise<PlanResult> {
  const pre = await plan({
    source: config.source,
    target: config.target,
    targetFromSource: config.targetFromSource,
    sourceFromTarget: config.sourceFromTarget,
    onConflict: config.onConflict,
    apply: config.onConflict !== null,
    moveMethod: config.moveMethod,
    cluster: config.cluster,
    mergedDbs: config.dbMap,
    // Reverse is probed when a rollback starts (Pair.methodFor).
    migrateProbes,
    ...(fence ? { fence } : {}),
  });
  if (pre.findings.some((f) => f.level !== 'ok')) {
    const report = formatPlanReport(pre).trimEnd().split('\n');
    for (const line of report) if (!line.startsWith('ok ')) log(`plan: ${line.replace(/^plan: /, '')}`);
  }
  if (pre.hardFailure) {
    const first = pre.findings.find((f) => f.level === 'fail');
    const hint =
      first?.check === 'conflicts'
        ? ' (a restarted rehome finds the leftovers of interrupted moves here: --on-conflict target keeps the target copies, as docs/DESIGN.md rule 3 does)'
        : '';
    if (!config.force) {
      throw new RehomeError('EPLAN', `pre-flight check failed: ${first?.message ?? 'see the log'}${hint}; fix it, or pass --force`);
    }
    log('pre-flight checks failed; starting anyway (--force)');
  }
  return pre;
}

/**
 * Refuses a switch to `to` from the phase the fleet acts on (`from`; null when unknown: every
 * check applies). Its answer decides only inside the fence (switchTo's step 3): before it,
 * moves and writes of the old phase can still change what these checks see. Before the fence
 * (`inFence` false) no MIGRATE is probed: the fleet may still move keys the other way.
 */
export async function switchPreconditions(config: ProxyConfig, to: SwitchablePhase, from: PhaseName | null, inFence: boolean): Promise<void> {
  if (to === 'reverse' && config.cluster !== undefined && config.dbMap.length > 0) {
    // The cluster does not know which of the merged dbs a key came from.
    throw new RehomeError('EPHASE', `cannot switch to reverse: --db-map merged db ${config.dbMap.join(', ')} into the cluster's db 0, and the cluster does not know which db each key came from; a rollback is a new migration per db`);
  }
  if (to === 'hold') {
    // Keys there would vanish for clients, and come back at the next migrate.
    const n = await keysOnNew(config);
    if (n > 0) {
      throw new RehomeError('EPHASE', `cannot switch to hold: the new server holds ${n} keys, which clients would no longer see; switch to reverse and wait until it is drained (the phase then becomes hold by itself)`);
    }
  }
  // From migrate (a scope widened or narrowed) the fleet is migrating already: keys in both
  // servers are leftovers of its moves, which rule 3 resolves.
  if (to === 'migrate' && from !== 'drained' && from !== 'migrate') {
    // The pre-flight checks of `rehome plan` (conflicts above all: a key already on the new
    // server would win over the old copy). From drained (keys written to the old server
    // directly since) the new server is full by design: migrate sweeps them again.
    const pre = await plan({
      source: config.source,
      target: config.target,
      targetFromSource: config.targetFromSource,
      onConflict: null,
      apply: false,
      moveMethod: config.moveMethod,
      cluster: config.cluster,
      mergedDbs: config.dbMap,
      migrateProbes: inFence ? 'forward' : 'none',
    });
    const first = pre.findings.find((f) => f.level === 'fail');
    if (pre.hardFailure) {
      throw new RehomeError('EPLAN', `cannot switch to migrate: pre-flight check failed: ${first?.message ?? 'see rehome plan'}`);
    }
  }
}

async function keysOnNew(config: ProxyConfig): Promise<number> {
  const c = new ControlPool(config.target, { commandTimeoutMs: 5_000, connectTimeoutMs: config.connectTimeoutMs }, 'target');
  try {
    const text = await c.db(0).info('keyspace');
    let n = 0;
    for (const m of text.matchAll(/^db\d+:keys=(\d+)/gm)) n += Number(m[1]);
    return n;
  } finally {
    await c.close();
  }
}
