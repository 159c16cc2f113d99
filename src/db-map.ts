/**
 * `--db-map N:0`: a cluster has db 0 only, so the old server's db N is merged into it. The cluster
 * front then takes `SELECT N` as `SELECT 0` (cluster/front-conn.ts): a client, the mover's probes and the
 * proxy-side move in db N all reach db 0 of the cluster, while the old server is still read in
 * db N; MIGRATE names destination db 0 (migration/migrate-cluster.ts). Keys of the same name in two merged
 * dbs would meet in one key (the first move wins, rule 3 deletes the other's source copy): `plan`
 * FAILs on them (tools/plan-cluster.ts).
 */
import { ConfigError } from './errors.js';

/** The parsed flags: the source dbs merged into the cluster's db 0 (0 itself is not listed). */
export function parseDbMap(values: readonly string[] | string | undefined): number[] {
  const list = values === undefined ? [] : typeof values === 'string' ? [values] : values;
  const out: number[] = [];
  for (const v of list) {
    const m = /^(\d{1,5}):(\d{1,5})$/.exec(v.trim());
    if (m === null) throw new ConfigError(`--db-map must be N:0 (a source db merged into the cluster's db 0), got '${v}'`);
    const from = Number(m[1]);
    if (Number(m[2]) !== 0) throw new ConfigError(`--db-map ${v}: a cluster has db 0 only, so the target db must be 0`);
    if (from === 0) continue;
    if (!out.includes(from)) out.push(from);
  }
  return out.sort((a, b) => a - b);
}

/** The cluster db a source db's keys go to: 0 for db 0 and every merged db, else the db itself (refused by the cluster). */
export function clusterDb(merged: readonly number[], db: number): number {
  return db === 0 || merged.includes(db) ? 0 : db;
}
