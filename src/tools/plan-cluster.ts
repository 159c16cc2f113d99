/**
 * `plan`'s checks for a cluster as the new server (src/cluster/): every slot is served, every
 * master answers and is empty, and the old server has keys in db 0 only, or in dbs merged into
 * db 0 with `--db-map N:0` (a cluster has no other db), with no key name in two merged dbs.
 */
import { ClusterFront } from '../cluster/front.js';
import { SLOT_MAP_REFRESH_MS } from '../cluster/target.js';
import { isClusterNode } from '../cluster/topology.js';
import type { ClusterTargetHandle } from '../config.js';
import { showKey } from '../errors.js';
import { RESERVED_PREFIX } from '../phase/phase.js';
import { DEFAULT_FRAMER_LIMITS } from '../resp/request-framer.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { closeServer, existsEach, keyText, openServer, scanDb, type ServerConn } from './scan-both.js';

/**
 * For `rehome plan` and `verify`: a cluster front when `target` or one of `seeds`
 * (--target-cluster, with the target's credentials) is a cluster node, else null.
 */
export async function openClusterFront(
  target: Endpoint,
  seeds: ReadonlyArray<{ host: string; port: number }> = [],
  mergedDbs: readonly number[] = [],
): Promise<ClusterFront | null> {
  const all: Endpoint[] = [target, ...seeds.map((a) => ({ ...target, host: a.host, port: a.port }))];
  const are = await Promise.all(all.map((ep) => isClusterNode(ep, 5_000).catch(() => false)));
  const nodes = all.filter((_, i) => are[i]);
  if (nodes.length === 0) return null;
  return ClusterFront.start(nodes, { connectTimeoutMs: 5_000, refreshMs: SLOT_MAP_REFRESH_MS, limits: DEFAULT_FRAMER_LIMITS, mergedDbs });
}

type Add = (level: 'ok' | 'warn' | 'fail', message: string, details?: string[]) => void;

export async function checkClusterTarget(cluster: ClusterTargetHandle, add: Add): Promise<void> {
  const gaps = cluster.uncovered();
  if (gaps !== '') add('fail', `the cluster serves no master for slots ${gaps}: keys of those slots could not be moved (CLUSTERDOWN); fix the cluster first (redis-cli --cluster fix)`);
  const census = await cluster.census();
  const down = census.filter((m) => m.error !== null);
  if (down.length > 0) {
    add('fail', `${down.length} of the cluster's ${census.length} masters do not answer`, down.map((m) => `${describeEndpoint(m)}: ${m.error}`));
  }
  const full = census.filter((m) => (m.keys ?? 0) > 0);
  const lines = census.map((m) => `${describeEndpoint(m)}: ${m.slots} slots, ${m.keys ?? '?'} keys`);
  if (full.length > 0) {
    // As for a standalone target: a warning (a restarted rehome finds its own moves there).
    add('warn', `the cluster's masters are not empty (${full.map((m) => `${describeEndpoint(m)} ${m.keys} keys`).join(', ')}): a new server is normally empty`, lines);
  } else if (gaps === '' && down.length === 0) {
    add('ok', `the cluster serves every slot on ${census.length} masters, all empty`, lines);
  }
}

/** How many colliding keys are named (the rest are counted). */
const MAX_LISTED = 100;

/**
 * The old server's dbs against the cluster's one db: keys outside db 0 and the dbs --db-map
 * merges into it FAIL; so does a key name in two merged dbs (both would become one key: the first
 * move wins and rule 3 deletes the other db's copy from the old server).
 */
export async function checkMergedDbs(source: Endpoint, merged: readonly number[], sourceKeysPerDb: Record<number, number>, add: Add): Promise<void> {
  const withKeys = Object.keys(sourceKeysPerDb).map(Number).filter((db) => (sourceKeysPerDb[db] ?? 0) > 0).sort((a, b) => a - b);
  const others = withKeys.filter((db) => db !== 0 && !merged.includes(db));
  if (others.length > 0) {
    add('fail', `the old server has keys in db ${others.join(', ')}, but a cluster has db 0 only: merge them into db 0 with ${others.map((d) => `--db-map ${d}:0`).join(' ')} (plan checks that no key name is in two of them), or move them into db 0 first`);
  }
  const group = withKeys.filter((db) => db === 0 || merged.includes(db));
  if (merged.length === 0 || group.length < 2) {
    if (merged.length > 0) add('ok', `--db-map: db ${merged.join(', ')} merged into the cluster's db 0; no two of them hold keys, so no key name collides`);
    return;
  }
  // Each db is scanned once and its keys looked up in the dbs before it: every pair is checked.
  const [scan, look] = await Promise.all([openServer('source', source), openServer('source', source)]);
  try {
    const found = await collisions(scan, look, group);
    if (found.total === 0) {
      add('ok', `--db-map: db ${group.join(', ')} merged into the cluster's db 0 with no key name in two of them`);
      return;
    }
    const details = found.listed.map((c) => `'${showKey(c.key)}' in db ${c.dbs.join(' and db ')}`);
    if (found.total > found.listed.length) details.push(`... and ${found.total - found.listed.length} more`);
    add('fail', `--db-map: ${found.total} key name${found.total === 1 ? ' is' : 's are'} in two dbs merged into the cluster's db 0; each pair would become one key (the first moved wins, the other is deleted): rename them first`, details);
  } finally {
    closeServer(scan);
    closeServer(look);
  }
}

async function collisions(scan: ServerConn, look: ServerConn, group: readonly number[]): Promise<{ total: number; listed: Array<{ key: string; dbs: number[] }> }> {
  const reserved = Buffer.from(RESERVED_PREFIX, 'latin1');
  let total = 0;
  const listed: Array<{ key: string; dbs: number[] }> = [];
  for (let i = 1; i < group.length; i++) {
    const db = group[i]!;
    for await (const page of scanDb(scan, db)) {
      const keys = page.filter((k) => !k.subarray(0, reserved.length).equals(reserved));
      if (keys.length === 0) continue;
      for (const earlier of group.slice(0, i)) {
        const there = await existsEach(look, earlier, keys);
        keys.forEach((k, j) => {
          if (!there[j]) return;
          total++;
          if (listed.length < MAX_LISTED) listed.push({ key: keyText(k), dbs: [earlier, db] });
        });
      }
    }
  }
  return { total, listed };
}
