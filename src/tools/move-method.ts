/**
 * Which way keys can move between two servers, found with a throwaway probe key (docs/DESIGN.md
 * "Moves"): the source's MIGRATE to the target, else DUMP on the source and RESTORE on the target
 * (MIGRATE refused, as managed services do, or the source can't reach the target), else the
 * type-aware copy (the target refuses the source's payload format). `rehome plan` reports the
 * choice for both directions; the proxy makes it at start-up with --move-method auto.
 */
import { randomBytes } from 'node:crypto';
import { RESERVED_PREFIX } from '../phase/phase.js';
import { describeEndpoint, migrateAuthArgs, type Endpoint } from '../upstream/endpoint.js';
import { errText, type ServerConn } from './scan-both.js';

/** A way to move keys, as --move-method names it. */
export type MoveMethodName = 'migrate' | 'dump' | 'copy';

/** The method chosen for one direction and why. */
export interface MethodChoice {
  method: MoveMethodName;
  reason: string;
}

const PROBE_PREFIX = `${RESERVED_PREFIX}method-probe:`;
const PROBE_TTL_MS = 10_000;
const MIGRATE_TIMEOUT_MS = 5_000;

/**
 * Errors that say MIGRATE can't be used here (renamed away, denied, the target unreachable from
 * the source, its payload refused); anything else (the target out of memory...) says nothing
 * about the method, and the probe is inconclusive.
 */
const MIGRATE_UNUSABLE = /unknown command|NOPERM|no permissions|IOERR|payload version|checksum|Bad data format|Connection|ECONNREFUSED|timed? ?out|not allowed/i;
/** Errors that say the target can't take the source's DUMP payloads (or DUMP/RESTORE are denied). */
const PAYLOAD_REFUSED = /payload version|checksum|Bad data format|unknown command|NOPERM|no permissions|not allowed/i;

/**
 * The probes' MIGRATE (args: host, port, key, db, timeout, options), asked a second time after an
 * IOERR. The source already redials a cached connection the target closed; what is left is a
 * timeout, and a target that stalled once for the whole timeout (a busy or starved machine) is not
 * one the source can't reach: seen refusing a phase switch's pre-flight check on a loaded machine.
 * One that can't be reached fails twice. The second asks REPLACE: the first may have landed after
 * its timeout (the probe key is rehome's own).
 */
export async function migrateOnceMore(from: ServerConn, args: Array<string | number>): Promise<string> {
  try {
    return String(await from.redis.call('MIGRATE', ...args));
  } catch (e) {
    if (!/^IOERR/.test(errText(e))) throw e;
    return String(await from.redis.call('MIGRATE', ...args.slice(0, 5), 'REPLACE', ...args.slice(5)));
  }
}


/**
 * Probes moving a key from `from` to `to` (db 0; `dest` is `to`'s address as `from` dials it,
 * `toEp` carries its credentials for MIGRATE). Writes only probe keys with a short TTL, deleted
 * afterwards. Throws when an error says nothing about the method (inconclusive).
 *
 * `noMigrate` (why MIGRATE must not be tried: keys move the other way by MIGRATE meanwhile, and a
 * MIGRATE each way at once holds both servers until its timeout) starts at DUMP/RESTORE.
 */
export async function probeMoveMethod(
  from: ServerConn,
  to: ServerConn,
  destFor: { host: string; port: number } | ((key: string) => { host: string; port: number } | null),
  toEp: Endpoint,
  noMigrate: string | null = null,
): Promise<MethodChoice> {
  const id = randomBytes(8).toString('hex');
  const key = `${PROBE_PREFIX}${id}`;
  // A cluster target: the master of the probe key's slot.
  const dest = typeof destFor === 'function' ? (destFor(key) ?? { host: toEp.host, port: toEp.port }) : destFor;
  const restored = `${key}:restore`;
  try {
    await from.redis.set(key, 'rehome move method probe', 'PX', PROBE_TTL_MS);
    let migrateWhy = `MIGRATE not used: ${noMigrate}`;
    if (noMigrate === null) {
      try {
        const r = await migrateOnceMore(from, [dest.host, dest.port, key, 0, MIGRATE_TIMEOUT_MS, 'COPY', ...migrateAuthArgs(toEp)]);
        if (r === 'OK' && (await to.redis.exists(key)) === 1) {
          return { method: 'migrate', reason: `MIGRATE to ${describeEndpoint(dest)} works` };
        }
        migrateWhy = r === 'OK' ? `the probe key MIGRATEd to ${describeEndpoint(dest)} did not arrive` : `MIGRATE answered ${r}`;
      } catch (e) {
        if (!MIGRATE_UNUSABLE.test(errText(e))) throw new Error(`MIGRATE of the probe key failed: ${errText(e)}`);
        migrateWhy = `MIGRATE refused: ${errText(e)}`;
      }
    }
    let restoreWhy: string;
    try {
      const payload = (await from.redis.callBuffer('DUMP', key)) as Buffer | null;
      if (payload === null) throw new Error('DUMP found no probe key');
      await to.redis.call('RESTORE', restored, PROBE_TTL_MS, payload);
      return { method: 'dump', reason: `${migrateWhy}; the target RESTOREs the source's DUMP payload` };
    } catch (e) {
      if (!PAYLOAD_REFUSED.test(errText(e))) throw new Error(`RESTORE of the probe key failed: ${errText(e)}`);
      restoreWhy = `DUMP/RESTORE refused: ${errText(e)}`;
    }
    await to.redis.set(restored, 'rehome move method probe', 'PX', PROBE_TTL_MS);
    return { method: 'copy', reason: `${migrateWhy}; ${restoreWhy}; the type-aware copy writes the target with ordinary commands` };
  } finally {
    await Promise.allSettled([from.redis.del(key), to.redis.del(key, restored)]);
  }
}
