/**
 * `verify`: the cutover gate. Applications may point at the target directly only when the source
 * is empty in every db and no key exists in both servers (docs/DESIGN.md: every key lives in exactly
 * one place).
 *
 * It SCANs every db of the source that INFO keyspace lists (at cutover time the source is small)
 * and checks each key on the target with pipelined EXISTS, then re-checks the hits on the source
 * (see confirmInBoth), so it is safe to run while proxies are still moving keys.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { parseSourceTarget } from '../config.js';
import { RehomeError, showKey } from '../errors.js';
import { parseDbMap } from '../db-map.js';
import { openClusterFront } from './plan-cluster.js';
import { SERVER_TLS_FLAGS } from '../tls-config.js';
import { PHASE_KEY } from '../phase/phase.js';
import { describeScope, inScope, isEverything, parseScope, type Scope } from '../phase/scope.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import {
  closeServer,
  configDatabases,
  confirmInBoth,
  describeCounts,
  info,
  keyspace,
  keyText,
  openBoth,
  plural,
  scanDb,
  sumCounts,
  type DbKey,
  type ServerConn,
} from './scan-both.js';

export interface VerifyOptions {
  source: Endpoint;
  target: Endpoint;
  /**
   * The target's number of databases. Default: CONFIG GET databases on the target, or 16 when
   * that is denied. Source keys in a db the target does not have cannot be in both.
   */
  databases?: number;
  /** How many keys in both to list (default 100); inBothTotal counts them all. */
  maxListed?: number;
  /**
   * A canary's scope (--scope, --scope-db): only its keys must be gone from the source; the keys
   * outside it are counted, not failed. Absent: the whole dataset (what a cut-over needs).
   */
  scope?: Scope;
}

export interface VerifyResult {
  /** True only when the source is empty in every db and no key exists in both servers. */
  ok: boolean;
  /** Keys still in the source, per db (only dbs that have keys). */
  remainingPerDb: Record<number, number>;
  /** Keys found in both servers, up to maxListed; keys are latin1 strings (one char per byte). */
  inBoth: DbKey[];
  /** How many keys were found in both servers in all. */
  inBothTotal: number;
  /** The target's number of databases as used for the check. */
  databases: number;
  /** The fleet's phase from the source's phase key (hold, migrate, drained...), or null: no phases. */
  phase: string | null;
  /** The scope checked (describeScope), or null for the whole dataset. */
  scope: string | null;
  /** Keys on the source outside the scope checked (0 without a scope). */
  outsideScope: number;
}

export const DEFAULT_MAX_LISTED = 100;

/** Throws RehomeError ESAME when both connections reach the same server (same run_id). */
export async function assertDistinct(source: ServerConn, target: ServerConn): Promise<void> {
  const [s, t] = await Promise.all([info(source, 'server'), info(target, 'server')]);
  const sid = s.get('run_id') ?? '';
  if (sid !== '' && sid === t.get('run_id')) {
    throw new RehomeError('ESAME', 'source and target are the same server (same run_id)');
  }
}

/**
 * Checks that the migration is complete. Throws RehomeError (EUPSTREAM, EAUTH, ESAME) when a
 * server cannot be checked; the message names the server and the cause.
 */
export async function verify(opts: VerifyOptions): Promise<VerifyResult> {
  const maxListed = opts.maxListed ?? DEFAULT_MAX_LISTED;
  let source: ServerConn | undefined;
  let target: ServerConn | undefined;
  try {
    ({ source, target } = await openBoth(opts.source, opts.target));
    await assertDistinct(source, target);
    const databases = opts.databases ?? (await configDatabases(target)) ?? 16;
    const phase = await fleetPhase(source);
    const dbs = [...(await keyspace(source)).keys()].sort((a, b) => a - b);
    const remainingPerDb: Record<number, number> = {};
    const inBoth: DbKey[] = [];
    let inBothTotal = 0;
    const scope = opts.scope && !isEverything(opts.scope) ? opts.scope : null;
    let outsideScope = 0;
    for (const db of dbs) {
      let count = 0;
      for await (const all of scanDb(source, db)) {
        // Keys outside a scope are where they belong: counted, not checked.
        const page = scope === null ? all : all.filter((k) => inScope(scope, db, keyText(k)));
        outsideScope += all.length - page.length;
        count += page.length;
        if (db >= databases) continue; // the target has no such db: nothing can be in both
        for (const k of await confirmInBoth(source, target, db, page)) {
          inBothTotal++;
          if (inBoth.length < maxListed) inBoth.push({ db, key: keyText(k) });
        }
      }
      // INFO keyspace also counts expired keys not yet reclaimed; SCAN does not return them.
      if (count > 0) remainingPerDb[db] = count;
    }
    const ok = Object.keys(remainingPerDb).length === 0 && inBothTotal === 0;
    return { ok, remainingPerDb, inBoth, inBothTotal, databases, phase, scope: scope === null ? null : describeScope(scope), outsideScope };
  } catch (e) {
    if (e instanceof RehomeError) throw e;
    throw new RehomeError('EUPSTREAM', `check failed: ${(e as Error).message.split('\n')[0]}`);
  } finally {
    closeServer(source);
    closeServer(target);
  }
}

/** The phase in the source's phase key, or null (no phases, or the key cannot be read). */
async function fleetPhase(source: ServerConn): Promise<string | null> {
  try {
    await source.redis.select(0);
    return (await source.redis.hget(PHASE_KEY, 'phase')) ?? null;
  } catch {
    return null; // e.g. an ACL that denies HGET: the report falls back to the general advice
  }
}

/** The human report printed by the CLI (one item per line, newline-terminated). */
export function formatVerifyReport(r: VerifyResult, source: Endpoint, target: Endpoint): string {
  const src = describeEndpoint(source);
  const lines: string[] = [];
  if (r.ok && r.scope !== null) {
    lines.push(`scope ${r.scope} drained: no key of it on the source ${src}, no key in both; ${plural(r.outsideScope, 'key')} outside the scope still on the old server (not a cut-over check: run verify without --scope for that)`);
    return `${lines.join('\n')}\n`;
  }
  if (r.ok) {
    lines.push(`source ${src} empty in every db; no key in both: safe to cut over to target ${describeEndpoint(target)}`);
    return `${lines.join('\n')}\n`;
  }
  const remaining = sumCounts(r.remainingPerDb);
  if (remaining > 0) {
    lines.push(`source ${src} still holds ${plural(remaining, 'key')}${r.scope !== null ? ` of scope ${r.scope}` : ''}: ${describeCounts(r.remainingPerDb)}`);
    const missing = Object.keys(r.remainingPerDb)
      .map(Number)
      .filter((db) => db >= r.databases);
    if (missing.length > 0) {
      lines.push(
        `  db ${missing.join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist on the target (it has ${r.databases} databases): those keys cannot be migrated`,
      );
    }
  }
  if (r.inBothTotal > 0) {
    lines.push(
      `${plural(r.inBothTotal, 'key')} ${r.inBothTotal === 1 ? 'exists' : 'exist'} in both source and target (the target copy wins; rehome deletes the source copy when the key is touched or swept):`,
    );
    for (const { db, key } of r.inBoth) lines.push(`  db${db} '${showKey(key)}'`);
    if (r.inBothTotal > r.inBoth.length) lines.push(`  ... and ${r.inBothTotal - r.inBoth.length} more`);
  }
  lines.push(`not safe to cut over yet: ${nextStep(r.phase)}`);
  return `${lines.join('\n')}\n`;
}

/**
 * What makes the source empty, by the fleet's phase: in drained and hold nothing moves keys out
 * of the old server (keys written to it directly since drained stay there) until a switch to
 * migrate; in migrate (or without phases) the proxies are moving them.
 */
function nextStep(phase: string | null): string {
  if (phase === 'drained' || phase === 'hold') {
    return `rehome is in phase ${phase}, which moves no key out of the source: run rehome phase migrate (the phase returns to drained once the source is empty), then run verify again`;
  }
  if (phase === 'reverse') return 'rehome is in phase reverse (keys move back to the source): run rehome phase migrate, wait for drained, then run verify again';
  return 'keep rehome running until the source is empty, then run verify again';
}

const VERIFY_USAGE = `usage: rehome verify --source redis://[user:pass@]host:port --target redis://[user:pass@]host:port
                     [--scope PATTERN]... [--scope-db N]...

Checks that the migration is complete: the source is empty in every db and no key exists in
both servers. Exit code 0: safe to cut over; 1: not yet (or a server could not be checked);
2: bad usage.

  --source URL   the old instance (rediss:// for TLS)
  --target URL   the new instance (rediss:// for TLS)
  --source-tls-ca-cert-file, --source-tls-cert-file, --source-tls-key-file, --source-tls-sni,
  --target-tls-ca-cert-file, --target-tls-cert-file, --target-tls-key-file, --target-tls-sni
                 TLS to a rediss:// server: its CA, rehome's client certificate and key, SNI
  --db-map N:0   a cluster as the new server with the old server's db N merged into db 0
                 (as the proxy was given it): db N is checked against the cluster's db 0
  --scope PATTERN, --scope-db N
                 a canary's scope (as rehome phase migrate takes it): only its keys must be
                 gone from the source; the keys outside it are counted (not a cut-over check)
  -h, --help     this text`;

/** The verify command line. Returns the exit code (0 ok, 1 not ok or unreachable, 2 usage). */
export async function runVerifyCli(argv: string[]): Promise<number> {
  let source: Endpoint;
  let target: Endpoint;
  let scope: Scope;
  let mergedDbs: number[];
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        source: { type: 'string' },
        target: { type: 'string' },
        ...SERVER_TLS_FLAGS,
        scope: { type: 'string', multiple: true },
        'scope-db': { type: 'string', multiple: true },
        'db-map': { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${VERIFY_USAGE}\n`);
      return 0;
    }
    ({ source, target } = parseSourceTarget(values));
    mergedDbs = parseDbMap(values['db-map']);
    // Checked against the server's db count by parseScope; 1<<16 here only for the syntax.
    scope = parseScope((values.scope ?? []).map((p) => Buffer.from(p, 'utf8').toString('latin1')), values['scope-db'] ?? [], 1 << 16);
  } catch (e) {
    process.stderr.write(`rehome verify: ${(e as Error).message.split('\n')[0]} (see --help)\n`);
    return 2;
  }
  let r: VerifyResult;
  // A cluster as the new server: checked through the cluster front, and every master answers.
  const front = await openClusterFront(target, [], mergedDbs).catch(() => null);
  let nodesOk = true;
  try {
    r = await verify({ source, target: front?.endpoint ?? target, scope });
    if (front !== null) {
      const census = await front.census();
      nodesOk = census.every((m) => m.error === null) && front.uncovered() === '';
      for (const m of census) {
        process.stdout.write(`verify: cluster master ${describeEndpoint(m)}: ${m.slots} slots, ${m.error === null ? `${m.keys} keys` : `does not answer (${m.error})`}\n`);
      }
      if (front.uncovered() !== '') process.stdout.write(`verify: no master serves slots ${front.uncovered()}\n`);
    }
  } catch (e) {
    process.stderr.write(`rehome verify: ${(e as Error).message.split('\n')[0]}\n`);
    return 1;
  } finally {
    await front?.close();
  }
  process.stdout.write(formatVerifyReport(r, source, target));
  return r.ok && nodesOk ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // exitCode, not exit(): stdout is flushed and the connections are already closed.
  runVerifyCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: Error) => {
      process.stderr.write(`rehome verify: ${e.message}\n`);
      process.exitCode = 1;
    },
  );
}
