/**
 * One MIGRATE from the source to the target (single-key or KEYS form, never REPLACE), with the
 * checks that make its outcome exact: see migrateKeys.
 */
import type { ControlPool } from '../upstream/control.js';
import { migrateAuthArgs } from '../upstream/endpoint.js';
import { moveKeys } from './move-keys.js';

/** Where MIGRATE sends keys, as the source sees the target. */
export interface MigrateDestination {
  host: string;
  port: number;
  username?: string;
  password?: string;
  timeoutMs: number;
  /**
   * A cluster target: the master a key goes to (its slot's), instead of host and port; null
   * while no master serves the slot (migrate-cluster.ts).
   */
  forKey?: (key: string) => { host: string; port: number } | null;
  /** A cluster target answered MIGRATE with MOVED: the slot map is out of date. */
  moved?: (slot: number, to: { host: string; port: number }) => void;
  /** A cluster target: the db a source db's keys go to (0, or the db itself when not merged by --db-map). */
  clusterDb?: (db: number) => number;
  /**
   * A cluster target: whether a master has replicas, and WAIT 1 on it (src/cluster/replica-wait.ts).
   * Moves into such a master keep the source copies until a replica has the keys.
   */
  hasReplicas?: (node: { host: string; port: number }) => boolean;
  replicated?: (node: { host: string; port: number }) => Promise<void>;
  /**
   * Reverse out of a cluster (the keys' source is the cluster, through its front): a key's slot.
   * A batch is then one MIGRATE per slot, as the front runs a transaction on one slot only.
   */
  sourceSlot?: (key: string) => number;
}

/** MIGRATE found a claim key of one of its keys: the batch goes through the protocol instead. */
export class ClaimPresent extends Error {}

const NON_ASCII = /[^\x00-\x7f]/;
function notAscii(k: string): boolean {
  return NON_ASCII.test(k);
}

function migrateArgs(d: MigrateDestination, destDb: number, keys: ReadonlyArray<string | Buffer>, copy: boolean): Array<string | Buffer | number> {
  const args: Array<string | Buffer | number> = [d.host, d.port];
  args.push(keys.length === 1 ? keys[0]! : '');
  args.push(destDb, d.timeoutMs);
  if (copy) args.push('COPY');
  args.push(...migrateAuthArgs(d));
  if (keys.length > 1) {
    args.push('KEYS');
    for (const k of keys) args.push(k);
  }
  return args;
}

/**
 * One MIGRATE, sent in a MULTI after an EXISTS of the same keys: the two run atomically in the
 * source, so on OK `moved` is exactly the number of keys that moved (MIGRATE ... KEYS skips
 * missing keys without saying so). Rejects on any error, with ClaimPresent when one of the keys
 * is claimed by a proxy-side move.
 */
export async function migrateKeys(
  pool: ControlPool,
  d: MigrateDestination,
  db: number,
  keys: readonly string[],
  timeoutMs?: number,
  /** The db MIGRATE writes in (a cluster's 0 for a db merged by --db-map); default `db`. */
  destDb: number = db,
  /** COPY: the source keeps its copies (a cluster target deletes them once a replica has the keys). */
  copy = false,
): Promise<{ reply: 'OK' | 'NOKEY'; moved: number }> {
  // Keys are latin1 strings (one char per byte). ioredis writes strings as UTF-8, which is the
  // same bytes for ASCII, and writes a command of strings in one piece (Buffers go piece by
  // piece); so ASCII keys go as strings, anything else as Buffers.
  const kb: Array<string | Buffer> = keys.some(notAscii)
    ? keys.map((k) => Buffer.from(k, 'latin1'))
    : (keys as string[]);
  const args = migrateArgs(d, destDb, kb, copy);
  if (timeoutMs !== undefined) args[4] = timeoutMs;
  // A claim key (another process's proxy-side move) means K is present, only renamed: MIGRATE
  // would answer NOKEY for it. Checked in the same transaction, so nothing can slip between.
  const cks = kb.map((k) => moveKeys(typeof k === 'string' ? Buffer.from(k, 'latin1') : k).claim);
  const res = await pool.db(db).multi().exists(...kb).exists(...cks).call('MIGRATE', ...args).exec();
  if (res === null) throw new Error('MIGRATE transaction aborted');
  const [ex, claimed, mg] = res;
  if (Number(claimed?.[1] ?? 0) > 0) throw new ClaimPresent('a proxy-side move holds a claim');
  if (mg?.[0]) throw mg[0];
  if (ex?.[0]) throw ex[0];
  const reply = String(mg?.[1]);
  if (reply !== 'OK' && reply !== 'NOKEY') throw new Error(`unexpected MIGRATE reply: ${reply}`);
  return { reply, moved: reply === 'OK' ? Number(ex?.[1] ?? 0) : 0 };
}
