/**
 * `plan`: the pre-flight check of a source/target pair, run before rehome starts (and by the
 * proxy at start, with apply: true, to resolve conflicts it was told how to resolve).
 *
 * Checks, each reported as a finding (ok / warn / fail):
 *   connect    both servers reachable and authenticated with the URLs' credentials
 *   server     they are two different servers (run_id)
 *   keyspace   keys per db of the source; the target has every db the source uses
 *   memory     the source's used_memory fits in the target's free room under maxmemory
 *   eviction   the target's maxmemory-policy is noeviction
 *   migrate    the source can MIGRATE to the target's address (a throwaway probe key; plan-moves.ts,
 *              which probes MIGRATE only in a direction keys are not moving against)
 *   restore    the target RESTOREs the source's DUMP payload (and the versions, to explain why not)
 *   version    the versions of both servers
 *   users      the users applications log in as on the source exist on the target (plan-users.ts)
 *   method     how keys move each way (MIGRATE, DUMP/RESTORE or the type-aware copy) and why;
 *              MIGRATE or RESTORE refused is then a warning, not a failure, where another works
 *   conflicts  keys already in both servers (docs/DESIGN.md rule 3: the target copy would win), and
 *              their resolution with onConflict + apply
 *
 * The only writes are the probe keys (short TTL, deleted afterwards) and, with apply, the DELs
 * that resolve conflicts. Resolve conflicts before any proxy serves clients: a DEL of the target
 * copy races with a proxy that is moving the same key.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { type ClusterTargetHandle, parseOnConflict, parseSourceTarget } from '../config.js';
import { parseDbMap } from '../db-map.js';
import { ConfigError, showKey } from '../errors.js';
import { SERVER_TLS_FLAGS } from '../tls-config.js';
import { describeEndpoint, parseHostPort, type Endpoint } from '../upstream/endpoint.js';
import { PHASE_KEY, RESERVED_PREFIX } from '../phase/phase.js';
import type { MethodChoice } from './move-method.js';
import { chooseMethods, freeDirections, MIGRATE_TIMEOUT_MS, probeMigrate } from './plan-moves.js';
import {
  closeServer,
  configDatabases,
  confirmInBoth,
  delEach,
  describeCounts,
  errText,
  existsEach,
  formatBytes,
  hasDb,
  keyText,
  openServer,
  parseInfo,
  parseKeyspace,
  plural,
  scanDb,
  sumCounts,
  toRecord,
  withoutPhaseKey,
  type DbKey,
  type ServerConn,
} from './scan-both.js';
import { checkClusterTarget, checkMergedDbs, openClusterFront } from './plan-cluster.js';
import { checkUsers } from './plan-users.js';
import { findUnmovable, unmovableFinding } from './plan-unmovable.js';

export type FindingLevel = 'ok' | 'warn' | 'fail';

export type PlanCheck =
  | 'connect'
  | 'server'
  | 'version'
  | 'keyspace'
  | 'memory'
  | 'eviction'
  | 'migrate'
  | 'restore'
  | 'users'
  | 'method'
  | 'types'
  | 'conflicts'
  | 'cluster';

export interface Finding {
  /** Which check produced it (stable, for programs; the message is for humans). */
  check: PlanCheck;
  level: FindingLevel;
  message: string;
  /** Extra lines (e.g. the keys in both), printed indented under the message. */
  details?: string[];
}

export interface PlanOptions {
  source: Endpoint;
  target: Endpoint;
  /** The target's address as the source dials it for MIGRATE (default: the target's). */
  targetFromSource?: { host: string; port: number } | null;
  /** The source's address as the target dials it for MIGRATE in reverse (default: the source's). */
  sourceFromTarget?: { host: string; port: number } | null;
  /**
   * The proxy's --move-method: a method other than auto is the one used (MIGRATE refused is then
   * a failure only for migrate); auto (or absent) uses the probe's choice.
   */
  moveMethod?: 'auto' | MethodChoice['method'];
  /**
   * Which MIGRATE probes may run. 'auto' (the default, `rehome plan`): each direction unless keys
   * may be moving the other way (phase/moving-now.ts); 'forward': old -> new only (the proxy's
   * checks, made where keys move old -> new or nothing moves; it probes new -> old itself when a
   * rollback starts); 'none': no MIGRATE (a phase switch's check before its fence).
   */
  migrateProbes?: 'auto' | 'forward' | 'none';
  /**
   * A proxy's pre-flight in a phase: its connections are named for the epoch (so the next switch
   * kills them, probes and all) and checked against the phase once named, before any probe.
   */
  fence?: { name: string; check(): Promise<void> };
  /** Which copy of a key in both servers to keep; null/absent: conflicts are a failure. */
  onConflict?: 'source' | 'target' | null;
  /**
   * With onConflict, resolve the conflicts (DEL the other copy). Only done when no other check
   * failed. Without apply, plan only reports what it would do.
   */
  apply?: boolean;
  /** How many conflicting keys to list (default 100). */
  maxListed?: number;
  /** The target is a cluster, reached through the cluster front at `target` (src/cluster/). */
  cluster?: ClusterTargetHandle | undefined;
  /** --db-map: the source dbs merged into the cluster's db 0. */
  mergedDbs?: readonly number[];
}

export interface PlanResult {
  findings: Finding[];
  /** True when any finding is 'fail'. */
  hardFailure: boolean;
  /**
   * Keys found in both servers: total, the first maxListed (latin1 strings), and how many of
   * them apply resolved (0 without apply).
   */
  conflicts: { total: number; listed: DbKey[]; resolved: number };
  /** Source keys per db (INFO keyspace, before any resolution), only dbs with keys. */
  sourceKeysPerDb: Record<number, number>;
  /** The target's `databases` (CONFIG GET); null where not read (denied, or plan stopped before). */
  targetDatabases: number | null;
  /** How keys move old -> new and new -> old (reverse); null where not probed. */
  methods: { forward: MethodChoice | null; reverse: MethodChoice | null };
}

const DEFAULT_MAX_LISTED = 100;


function versionLabel(inf: Map<string, string>): string {
  const valkey = inf.get('valkey_version');
  if (valkey !== undefined) return `valkey ${valkey}`;
  return `redis ${inf.get('redis_version') ?? 'unknown'}`;
}

function majorOf(inf: Map<string, string>): number | null {
  const v = inf.get('redis_version');
  const m = v ? /^(\d+)\./.exec(v) : null;
  return m ? Number(m[1]) : null;
}

function num(inf: Map<string, string>, field: string): number | null {
  const v = inf.get(field);
  if (v === undefined || v.trim() === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

/** Runs the pre-flight checks. Never throws for a server problem: that is a 'fail' finding. */
export async function plan(opts: PlanOptions): Promise<PlanResult> {
  const findings: Finding[] = [];
  const add = (check: PlanCheck, level: FindingLevel, message: string, details?: string[]): void => {
    findings.push(details && details.length > 0 ? { check, level, message, details } : { check, level, message });
  };
  const conflicts: PlanResult['conflicts'] = { total: 0, listed: [], resolved: 0 };
  const methods: PlanResult['methods'] = { forward: null, reverse: null };
  let sourceKeysPerDb: Record<number, number> = {};
  let targetDatabases: number | null = null;
  const result = (): PlanResult => ({
    findings,
    hardFailure: findings.some((f) => f.level === 'fail'),
    conflicts,
    sourceKeysPerDb,
    targetDatabases,
    methods,
  });

  let source: ServerConn | undefined;
  let target: ServerConn | undefined;
  let phase: PlanCheck = 'connect';
  try {
    // connect: both, so one report names every unreachable server.
    const open = { commandTimeoutMs: MIGRATE_TIMEOUT_MS + 25_000, ...(opts.fence ? { name: opts.fence.name } : {}) };
    const opened = await Promise.allSettled([openServer('source', opts.source, open), openServer('target', opts.target, open)]);
    for (const [i, r] of opened.entries()) {
      const role = i === 0 ? 'source' : 'target';
      const ep = i === 0 ? opts.source : opts.target;
      if (r.status === 'rejected') {
        add('connect', 'fail', errText(r.reason));
        continue;
      }
      if (i === 0) source = r.value;
      else target = r.value;
      const auth = ep.password !== undefined ? `authenticated${ep.username !== undefined ? ` as ${ep.username}` : ''}` : 'no credentials';
      add('connect', 'ok', `${role} ${describeEndpoint(ep)} reachable (${auth})`);
      if (r.value.authWarning) add('connect', 'warn', r.value.authWarning);
    }
    if (!source || !target) {
      const f = findings.filter((x) => x.level === 'fail');
      const last = f[f.length - 1];
      if (last) last.message += ' (remaining checks skipped)';
      return result();
    }
    const s = source;
    const t = target;
    await opts.fence?.check();

    // server: INFO (default sections: server, memory, keyspace, ...) of both.
    phase = 'server';
    const [sText, tText] = await Promise.all([s.redis.info(), t.redis.info()]);
    const sInfo = parseInfo(sText);
    const tInfo = parseInfo(tText);
    const sRun = sInfo.get('run_id') ?? '';
    if (sRun !== '' && sRun === tInfo.get('run_id')) {
      add('server', 'fail', 'source and target are the same server (same run_id); remaining checks skipped');
      return result();
    }

    // keyspace: what the source holds, and whether the target has those dbs.
    phase = 'keyspace';
    const [sPhase, tPhase] = await Promise.all([s.redis.exists(PHASE_KEY), t.redis.exists(PHASE_KEY)]);
    const sourceKeys = withoutPhaseKey(parseKeyspace(sText), sPhase);
    const targetKeys = withoutPhaseKey(parseKeyspace(tText), tPhase);
    sourceKeysPerDb = toRecord(sourceKeys);
    const srcTotal = sumCounts(sourceKeysPerDb);
    targetDatabases = await configDatabases(t);
    let tDatabases = targetDatabases;
    if (tDatabases === null) {
      add('keyspace', 'warn', "could not read the target's databases setting (CONFIG GET denied): assuming 16");
      tDatabases = 16;
    }
    const maxDb = sourceKeys.size > 0 ? Math.max(...sourceKeys.keys()) : -1;
    if (maxDb >= tDatabases) {
      const beyond = [...sourceKeys.keys()].filter((db) => db >= tDatabases).sort((a, b) => a - b);
      add(
        'keyspace',
        'fail',
        `source uses db ${beyond.join(', ')} but the target has only ${tDatabases} databases (db0-db${tDatabases - 1}): those keys cannot be migrated; start the target with databases ${maxDb + 1} or more`,
      );
    } else {
      add(
        'keyspace',
        'ok',
        srcTotal > 0
          ? `source holds ${plural(srcTotal, 'key')} (${describeCounts(sourceKeysPerDb)}); the target has ${tDatabases} databases`
          : `source holds no keys; the target has ${tDatabases} databases`,
      );
    }
    const tgtRec = toRecord(targetKeys);
    const tgtTotal = sumCounts(tgtRec);
    if (tgtTotal > 0) {
      // A new server is normally empty: a wrong --target pointing at a live instance must stand out.
      add(
        'keyspace',
        'warn',
        `target ${describeEndpoint(opts.target)} already holds ${plural(tgtTotal, 'key')} (${describeCounts(tgtRec)}): a new server is normally empty; check that --target is the new instance and not a live one (leftovers of a test: FLUSHALL it; a migration already under way, such as a restarted rehome's, fills it by design)`,
      );
    }

    if (opts.cluster !== undefined) {
      phase = 'cluster';
      const addCluster = (level: FindingLevel, message: string, details?: string[]): void => add('cluster', level, message, details);
      await checkClusterTarget(opts.cluster, addCluster);
      await checkMergedDbs(opts.source, opts.mergedDbs ?? [], sourceKeysPerDb, addCluster);
      // A merged db's keys meet the cluster's db 0 (the front takes SELECT N as SELECT 0).
      const inZero = targetKeys.get(0) ?? 0;
      if (inZero > 0) for (const db of opts.mergedDbs ?? []) targetKeys.set(db, inZero);
    }

    // memory: will the source's data fit under the target's maxmemory?
    phase = 'memory';
    const sUsed = num(sInfo, 'used_memory');
    const tUsed = num(tInfo, 'used_memory');
    const tMax = num(tInfo, 'maxmemory');
    const policy = tInfo.get('maxmemory_policy');
    if (sUsed === null || tUsed === null || tMax === null) {
      add('memory', 'warn', 'could not read used_memory/maxmemory from INFO: memory not checked');
    } else if (tMax === 0) {
      add(
        'memory',
        'ok',
        `source uses ${formatBytes(sUsed)}; the target has no maxmemory limit (uses ${formatBytes(tUsed)})`,
      );
    } else {
      const room = tMax - tUsed;
      const where = `the target has ${formatBytes(Math.max(room, 0))} free under its maxmemory ${formatBytes(tMax)} (uses ${formatBytes(tUsed)})`;
      if (sUsed > room) {
        add(
          'memory',
          'fail',
          `source uses ${formatBytes(sUsed)} but ${where}: migrated keys would be refused (OOM); raise maxmemory on the target`,
        );
      } else if (sUsed > 0.8 * room) {
        add(
          'memory',
          'warn',
          `source uses ${formatBytes(sUsed)}, more than 80% of the ${formatBytes(room)} the target has free under its maxmemory ${formatBytes(tMax)} (uses ${formatBytes(tUsed)})`,
        );
      } else {
        add('memory', 'ok', `source uses ${formatBytes(sUsed)}; ${where}`);
      }
    }
    phase = 'eviction';
    if (policy === undefined) {
      add('eviction', 'warn', "could not read the target's maxmemory-policy from INFO");
    } else if (policy !== 'noeviction') {
      add(
        'eviction',
        'warn',
        `target maxmemory-policy is ${policy}, not noeviction: eviction could drop migrated keys; consider CONFIG SET maxmemory-policy noeviction on the target during the migration`,
      );
    } else {
      add('eviction', 'ok', 'target maxmemory-policy is noeviction');
    }

    // migrate + restore: the probe key round trip.
    phase = 'migrate';
    const free = await freeDirections(opts, s, tgtTotal > 0);
    const probe = await probeMigrate(s, t, opts, add, free.forward);

    // version: reported after the RESTORE probe, which is the real test of payload compatibility.
    phase = 'version';
    const sMajor = majorOf(sInfo);
    const tMajor = majorOf(tInfo);
    const versions = `source ${versionLabel(sInfo)}, target ${versionLabel(tInfo)}`;
    if (sMajor !== null && tMajor !== null && tMajor < sMajor) {
      if (probe.restore === 'ok') {
        add('version', 'warn', `${versions}: the target is older; it restored the probe payload, but newer data types or commands may not work on it`);
      } else {
        add('version', 'fail', `${versions}: the target is older than the source and may refuse to RESTORE the source's payloads`);
      }
    } else {
      add('version', 'ok', versions);
    }

    phase = 'users';
    await checkUsers(s, t, add);
    // method: how keys move each way; a refused MIGRATE or RESTORE is then only a warning.
    phase = 'method';
    await chooseMethods(s, t, opts, methods, add, free);
    const forced = opts.moveMethod !== undefined && opts.moveMethod !== 'auto' ? opts.moveMethod : null;
    softenRefusals(findings, forced ?? methods.forward?.method ?? null, forced !== null);
    // types: what the type-aware copy can't rebuild on the target (plan-unmovable.ts).
    phase = 'types';
    if ((forced ?? methods.forward?.method) === 'copy') {
      const f = unmovableFinding(await findUnmovable(s, t, sourceKeys, opts.maxListed ?? DEFAULT_MAX_LISTED));
      add('types', f.level, f.message, f.details);
    }

    // conflicts: keys already in both servers.
    phase = 'conflicts';
    const applying = opts.apply === true && opts.onConflict != null && !findings.some((f) => f.level === 'fail');
    await findConflicts(s, t, sourceKeys, targetKeys, opts, applying, conflicts);
    reportConflicts(opts, applying, conflicts, add);
    return result();
  } catch (e) {
    add(phase, 'fail', `${phase} check failed: ${errText(e)}; remaining checks skipped`);
    return result();
  } finally {
    closeServer(source);
    closeServer(target);
  }
}

/**
 * Where a proxy-side move works, MIGRATE or RESTORE refused no longer stops a migration: those
 * failures become warnings naming the method used instead. A MIGRATE that went to another server
 * stays a failure: --target-from-source names the wrong server.
 */
function softenRefusals(findings: Finding[], method: MethodChoice['method'] | null, forced: boolean): void {
  if (method === null || method === 'migrate') return;
  for (const f of findings) {
    if (f.level !== 'fail') continue;
    const soften =
      (f.check === 'migrate' && !/did not arrive/.test(f.message)) ||
      (method === 'copy' && (f.check === 'restore' || f.check === 'version'));
    if (soften) {
      f.level = 'warn';
      f.message += `; keys move by ${method} instead (--move-method ${forced ? method : 'auto'})`;
    }
  }
}

/**
 * Finds keys in both servers, per db, by scanning whichever side holds fewer keys there: the
 * target before a migration, the source late in one (a proxy restarted mid-migration does not
 * scan millions of moved keys).
 */
async function findConflicts(
  s: ServerConn,
  t: ServerConn,
  sourceKeys: ReadonlyMap<number, number>,
  targetKeys: ReadonlyMap<number, number>,
  opts: PlanOptions,
  applying: boolean,
  conflicts: PlanResult['conflicts'],
): Promise<void> {
  const maxListed = opts.maxListed ?? DEFAULT_MAX_LISTED;
  const probePrefix = Buffer.from(RESERVED_PREFIX, 'latin1');
  for (const db of [...targetKeys.keys()].sort((a, b) => a - b)) {
    if (!(await hasDb(s, db))) continue; // the source has no such db: nothing there is in both
    const nSource = sourceKeys.get(db) ?? 0;
    if (nSource === 0) continue;
    const scanSource = nSource < (targetKeys.get(db) ?? 0);
    for await (const page of scanDb(scanSource ? s : t, db)) {
      const keys = page.filter((k) => !k.subarray(0, probePrefix.length).equals(probePrefix));
      // Most keys of the scanned side are not on the other: filter cheaply, then confirm in
      // both orders (keys may be moving meanwhile).
      const onOther = await existsEach(scanSource ? t : s, db, keys);
      const both = await confirmInBoth(s, t, db, keys.filter((_, i) => onOther[i]));
      if (both.length === 0) continue;
      conflicts.total += both.length;
      for (const k of both) {
        if (conflicts.listed.length < maxListed) conflicts.listed.push({ db, key: keyText(k) });
      }
      if (applying) {
        // 'source' keeps the source copy: drop the target's, the key is migrated later.
        // 'target' keeps the target copy: drop the source's.
        conflicts.resolved += await delEach(opts.onConflict === 'source' ? t : s, db, both);
      }
    }
  }
}

function reportConflicts(
  opts: PlanOptions,
  applying: boolean,
  c: PlanResult['conflicts'],
  add: (check: PlanCheck, level: FindingLevel, message: string, details?: string[]) => void,
): void {
  if (c.total === 0) {
    add('conflicts', 'ok', 'no key exists in both servers');
    return;
  }
  const details = c.listed.map(({ db, key }) => `db${db} '${showKey(key)}'`);
  if (c.total > c.listed.length) details.push(`... and ${c.total - c.listed.length} more`);
  const n = `${plural(c.total, 'key')} ${c.total === 1 ? 'exists' : 'exist'} in both`;
  const keep = opts.onConflict;
  if (keep == null) {
    add('conflicts', 'fail', `${n}; the target copy would win; pass --on-conflict source|target`, details);
    return;
  }
  const other = keep === 'source' ? 'target' : 'source';
  const effect =
    keep === 'source'
      ? 'delete the target copy of each (the source copy is migrated later)'
      : 'delete the source copy of each (the target copy stays)';
  if (applying) {
    add('conflicts', 'ok', `${n}: resolved, kept the ${keep} copy: deleted ${plural(c.resolved, `${other} copy`, `${other} copies`)}`, details);
  } else if (opts.apply) {
    add('conflicts', 'warn', `${n}; --on-conflict ${keep} would ${effect}; not applied because of the failures above`, details);
  } else {
    add('conflicts', 'warn', `${n}; --on-conflict ${keep} would ${effect}; not applied without --apply`, details);
  }
}

/** The human report: one finding per line with a marker, details indented, then a summary. */
export function formatPlanReport(r: PlanResult): string {
  const mark: Record<FindingLevel, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };
  const lines: string[] = [];
  for (const f of r.findings) {
    lines.push(`${mark[f.level]}  ${f.message}`);
    for (const d of f.details ?? []) lines.push(`        ${d}`);
  }
  const fails = r.findings.filter((f) => f.level === 'fail').length;
  const warns = r.findings.filter((f) => f.level === 'warn').length;
  if (fails > 0) {
    lines.push(`plan: NOT ready: ${plural(fails, 'failure')}, ${plural(warns, 'warning')}; fix the failures before starting rehome`);
  } else if (warns > 0) {
    lines.push(`plan: ready to migrate, with ${plural(warns, 'warning')} (see above)`);
  } else {
    lines.push('plan: ready to migrate');
  }
  return `${lines.join('\n')}\n`;
}

const PLAN_USAGE = `usage: rehome plan --source redis://[user:pass@]host:port --target redis://[user:pass@]host:port [options]

Pre-flight checks of a migration: both servers reachable and authenticated, the source can
MIGRATE to the target (a throwaway probe key with a 10 s TTL, deleted afterwards), the target
can RESTORE the source's payloads, versions, databases, memory, eviction policy, the users
applications log in as (ACL LIST, or whether a password is required), and keys that already
exist in both servers (conflicts). Exit code 0: no failure; 1: a failure; 2: bad usage.

  --source URL                    the old instance
  --target URL                    the new instance
  --target-from-source host:port  the target's address as the source dials it for MIGRATE
  --target-cluster host:port,...  more seed nodes of a cluster as the new server (plan reads the
                                  slot map from the first that answers)
  --db-map N:0                    a cluster target: the old server's db N merged into db 0
                                  (repeatable); plan FAILs on key names in two merged dbs
  --on-conflict source|target     which copy of a key in both servers to keep; without --apply
                                  plan only reports what it would delete
  --apply                         with --on-conflict, resolve the conflicts now: 'source' deletes
                                  the target copies, 'target' deletes the source copies (only
                                  when no other check failed; run it before any proxy serves)
  --source-tls-ca-cert-file, --source-tls-cert-file, --source-tls-key-file, --source-tls-sni,
  --target-tls-ca-cert-file, --target-tls-cert-file, --target-tls-key-file, --target-tls-sni
                                  TLS to a rediss:// server: its CA, rehome's client certificate
                                  and key, SNI (MIGRATE itself uses TLS only where the source runs
                                  tls-cluster yes: the probe key shows whether it works)
  -h, --help                      this text`;

/** The plan command line. Returns the exit code (0 no failure, 1 a failure, 2 usage). */
export async function runPlanCli(argv: string[]): Promise<number> {
  let opts: PlanOptions;
  let seeds: Array<{ host: string; port: number }> = [];
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        source: { type: 'string' },
        target: { type: 'string' },
        'target-from-source': { type: 'string' },
        'target-cluster': { type: 'string' },
        'db-map': { type: 'string', multiple: true },
        ...SERVER_TLS_FLAGS,
        'on-conflict': { type: 'string' },
        apply: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${PLAN_USAGE}\n`);
      return 0;
    }
    const { source, target } = parseSourceTarget(values);
    const oc = parseOnConflict(values['on-conflict']);
    if (values.apply && oc === null) throw new ConfigError('--apply needs --on-conflict source|target');
    const tfs = values['target-from-source'];
    opts = {
      source,
      target,
      targetFromSource: tfs !== undefined ? parseHostPort('--target-from-source', tfs) : null,
      onConflict: oc,
      apply: values.apply === true,
      mergedDbs: parseDbMap(values['db-map']),
    };
    seeds = (values['target-cluster'] ?? '').split(',').filter((x) => x.trim() !== '').map((x) => parseHostPort('--target-cluster', x.trim()));
    if (opts.targetFromSource && opts.targetFromSource.port === 0) {
      throw new ConfigError('--target-from-source: port 0 is not an address');
    }
  } catch (e) {
    process.stderr.write(`rehome plan: ${errText(e)} (see --help)\n`);
    return 2;
  }
  // A cluster as the new server: plan talks to it through the cluster front, as the proxy does.
  const front = await openClusterFront(opts.target, seeds, opts.mergedDbs).catch(() => null);
  if (front !== null) opts = { ...opts, target: front.endpoint, cluster: front };
  else if (seeds.length > 0 || (opts.mergedDbs ?? []).length > 0) {
    process.stderr.write(`rehome plan: ${seeds.length > 0 ? '--target-cluster' : '--db-map'}: none of the new server's addresses answers as a cluster node (INFO cluster: cluster_enabled:1)\n`);
    return 2;
  }
  try {
    const r = await plan(opts);
    process.stdout.write(formatPlanReport(r));
    return r.hardFailure ? 1 : 0;
  } finally {
    await front?.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // exitCode, not exit(): stdout is flushed and the connections are already closed.
  runPlanCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: Error) => {
      process.stderr.write(`rehome plan: ${e.message}\n`);
      process.exitCode = 1;
    },
  );
}
