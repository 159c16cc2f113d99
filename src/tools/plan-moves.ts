/**
 * The pre-flight checks of `rehome plan` that move a throwaway probe key (src/tools/plan.ts runs
 * them): MIGRATE old -> new and RESTORE of the source's payload, and how keys move each way
 * (move-method.ts). A MIGRATE is probed only in a direction keys are not moving against
 * (phase/moving-now.ts; docs/DESIGN.md, "One direction at a time").
 */
import { randomBytes } from 'node:crypto';
import type { ClusterTargetHandle } from '../config.js';
import { movingNow } from '../phase/moving-now.js';
import { describeEndpoint, migrateAuthArgs, type Endpoint } from '../upstream/endpoint.js';
import { migrateOnceMore, probeMoveMethod, type MethodChoice } from './move-method.js';
import { errText, type ServerConn } from './scan-both.js';

/** What these checks read of plan's options (PlanOptions). */
export interface MoveProbeOptions {
  source: Endpoint;
  target: Endpoint;
  targetFromSource?: { host: string; port: number } | null;
  sourceFromTarget?: { host: string; port: number } | null;
  cluster?: ClusterTargetHandle | undefined;
  migrateProbes?: 'auto' | 'forward' | 'none';
}

/** plan's finding sink, for the checks made here. */
export type AddFinding = (check: 'migrate' | 'restore' | 'method', level: 'ok' | 'warn' | 'fail', message: string) => void;


/**
 * MIGRATE has no TLS options: the source dials the target in plain TCP unless it runs with
 * `tls-cluster yes` (and then with its own tls-cert-file). So over rediss:// it is used only where
 * the probe key proved it works.
 */
const MIGRATE_TLS_NOTE =
  'MIGRATE does not use TLS unless the source runs with tls-cluster yes: set that on the source, or give --target-from-source a plain-TCP address of the target the source can reach';

function overTls(opts: MoveProbeOptions): boolean {
  return opts.source.tls !== undefined || opts.target.tls !== undefined;
}

/** Names a probe key; keys with this prefix are never reported as conflicts. */
export const PROBE_PREFIX = '__rehome:plan-probe:';
const PROBE_TTL_MS = 10_000;
/** MIGRATE's own timeout in the probes (plan's command timeout leaves room for it). */
export const MIGRATE_TIMEOUT_MS = 5_000;

/** Outcome of the probe-key round trip: MIGRATE and RESTORE. */
export interface ProbeOutcome {
  restore: 'ok' | 'refused' | 'untested';
}

/**
 * SET a throwaway key on the source (short PX), DUMP it, MIGRATE ... COPY it to the target's
 * address, check it arrived, RESTORE the DUMP under another throwaway name on the target; then
 * delete every probe key on both servers.
 */
export async function probeMigrate(
  s: ServerConn,
  t: ServerConn,
  opts: MoveProbeOptions,
  add: AddFinding,
  notForward: string | null,
): Promise<ProbeOutcome> {
  const id = randomBytes(8).toString('hex');
  const probeKey = `${PROBE_PREFIX}${id}`;
  // A cluster: the master of the probe key's slot.
  const dest = opts.cluster?.nodeForKey(probeKey) ?? opts.targetFromSource ?? { host: opts.target.host, port: opts.target.port };
  const destText = describeEndpoint(dest);
  const restoreKey = `${PROBE_PREFIX}${id}:restore`;
  const out: ProbeOutcome = { restore: 'untested' };
  try {
    await Promise.all([s.redis.select(0), t.redis.select(0)]);
    try {
      await s.redis.set(probeKey, 'rehome plan probe', 'PX', PROBE_TTL_MS);
    } catch (e) {
      const msg = errText(e);
      if (/^READONLY/.test(msg)) {
        add('migrate', 'fail', `source is read-only (${msg}): rehome removes keys from the source, so it must be the primary`);
      } else {
        add('migrate', 'warn', `could not write a probe key on the source (${msg}): MIGRATE and RESTORE not tested`);
      }
      return out;
    }
    let payload: Buffer | null = null;
    let dumpError = '';
    try {
      payload = (await s.redis.callBuffer('DUMP', probeKey)) as Buffer | null;
    } catch (e) {
      dumpError = errText(e);
    }

    if (notForward !== null) {
      add('migrate', 'warn', `MIGRATE old -> new not probed: ${notForward}`);
    } else {
      const args: Array<string | number> = [dest.host, dest.port, probeKey, 0, MIGRATE_TIMEOUT_MS, 'COPY', ...migrateAuthArgs(opts.target)];
      let reply = '';
      let migrateError = '';
      try {
        reply = await migrateOnceMore(s, args);
      } catch (e) {
        migrateError = errText(e);
      }
      if (migrateError !== '') {
        const hint = overTls(opts)
          ? ` (${MIGRATE_TLS_NOTE})`
          : opts.targetFromSource
            ? ''
            : ' (if the source reaches the target under another address, pass --target-from-source host:port)';
        add('migrate', 'fail', `source cannot MIGRATE to the target at ${destText}: ${migrateError}${hint}`);
      } else if (reply !== 'OK') {
        add('migrate', 'fail', `MIGRATE of the probe key to ${destText} answered ${reply}`);
      } else if ((await t.redis.exists(probeKey)) !== 1) {
        add(
          'migrate',
          'fail',
          `MIGRATE to ${destText} succeeded but the probe key did not arrive in the target ${describeEndpoint(opts.target)}: ${destText} is another server`,
        );
      } else {
        add('migrate', 'ok', `source can MIGRATE to the target at ${destText}`);
      }
    }

    if (payload === null) {
      add('restore', 'warn', `could not DUMP the probe key on the source (${dumpError || 'no payload'}): RESTORE not tested`);
      return out;
    }
    try {
      await t.redis.call('RESTORE', restoreKey, PROBE_TTL_MS, payload);
      out.restore = 'ok';
      add('restore', 'ok', "target can RESTORE the source's payload format");
    } catch (e) {
      out.restore = 'refused';
      add('restore', 'fail', `target cannot RESTORE the source's payload format: ${errText(e)}`);
    }
    return out;
  } finally {
    // Best effort: the probe keys expire on their own within PROBE_TTL_MS anyway.
    await Promise.allSettled([s.redis.del(probeKey), t.redis.del(probeKey, restoreKey)]);
  }
}

/** Why MIGRATE must not be probed old -> new and new -> old now; null where it may be. */
export interface FreeDirections {
  forward: string | null;
  reverse: string | null;
}

const BOTH_HELD = 'a MIGRATE each way at once holds both servers until its timeout';

/** Which MIGRATE probes may run (PlanOptions.migrateProbes). `newHoldsKeys`: data keys on the target. */
export async function freeDirections(opts: MoveProbeOptions, s: ServerConn, newHoldsKeys: boolean): Promise<FreeDirections> {
  const mode = opts.migrateProbes ?? 'auto';
  if (mode === 'none') {
    const later = `keys may be moving the other way by MIGRATE, and ${BOTH_HELD}; it is probed where they cannot be (a phase switch inside its fence, a runtime on connections of its epoch)`;
    return { forward: later, reverse: later };
  }
  const rollback = 'the proxy probes it when a rollback starts';
  if (mode === 'forward') return { forward: null, reverse: rollback };
  const m = await movingNow(s.redis, newHoldsKeys);
  return {
    forward: m.reverse ? `keys are moving new -> old (${m.why}), and ${BOTH_HELD}; run plan again in hold or once drained` : null,
    reverse: m.forward ? `keys are moving old -> new (${m.why}), and ${BOTH_HELD}; ${rollback}` : null,
  };
}

/** Probes the move method old -> new and new -> old (roles swapped) where free, and reports both. */
export async function chooseMethods(
  s: ServerConn,
  t: ServerConn,
  opts: MoveProbeOptions,
  methods: { forward: MethodChoice | null; reverse: MethodChoice | null },
  add: AddFinding,
  free: FreeDirections,
): Promise<void> {
  const cluster = opts.cluster;
  const toTarget = cluster !== undefined
    ? (k: string) => cluster.nodeForKey(k)
    : (opts.targetFromSource ?? { host: opts.target.host, port: opts.target.port });
  const toSource = opts.sourceFromTarget ?? { host: opts.source.host, port: opts.source.port };
  const dirs = [
    ['old -> new', s, t, toTarget, opts.target],
    ['new -> old (reverse, a rollback)', t, s, toSource, opts.source],
  ] as const;
  for (const [dir, from, to, dest, ep] of dirs) {
    const notHere = dir === 'old -> new' ? free.forward : free.reverse;
    if (notHere !== null) {
      // Unprobed old -> new leaves the migration's method unknown; new -> old waits for a rollback.
      add('method', dir === 'old -> new' ? 'warn' : 'ok', `how keys move ${dir} not probed: ${notHere}`);
      continue;
    }
    try {
      const c = await probeMoveMethod(from, to, dest, ep);
      if (dir === 'old -> new') methods.forward = c;
      else methods.reverse = c;
      add('method', 'ok', `keys move ${dir} by ${c.method}: ${c.reason}`);
    } catch (e) {
      add('method', 'warn', `could not probe how keys move ${dir}: ${errText(e)}`);
    }
  }
}
