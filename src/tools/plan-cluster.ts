/**
 * `plan`'s checks for a cluster as the new server (src/cluster/): every slot is served, every
 * master answers and is empty, and the old server has keys in db 0 only (a cluster has no other
 * db; merging dbs into db 0 is not built yet).
 */
import { ClusterFront } from '../cluster/front.js';
import { SLOT_MAP_REFRESH_MS } from '../cluster/target.js';
import { isClusterNode } from '../cluster/topology.js';
import type { ClusterTargetHandle } from '../config.js';
import { DEFAULT_FRAMER_LIMITS } from '../resp/request-framer.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';

/** For `rehome plan` and `verify`: a cluster front when `target` is a cluster node, else null. */
export async function openClusterFront(target: Endpoint): Promise<ClusterFront | null> {
  if (!(await isClusterNode(target, 5_000))) return null;
  return ClusterFront.start([target], { connectTimeoutMs: 5_000, refreshMs: SLOT_MAP_REFRESH_MS, limits: DEFAULT_FRAMER_LIMITS });
}

type Add = (level: 'ok' | 'warn' | 'fail', message: string, details?: string[]) => void;

export async function checkClusterTarget(cluster: ClusterTargetHandle, sourceKeysPerDb: Record<number, number>, add: Add): Promise<void> {
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
  const others = Object.keys(sourceKeysPerDb).map(Number).filter((db) => db !== 0 && (sourceKeysPerDb[db] ?? 0) > 0);
  if (others.length > 0) {
    add('fail', `the old server has keys in db ${others.join(', ')}, but a cluster has db 0 only: move them into db 0 first (MOVE, or a separate migration per db); rehome does not merge dbs yet`);
  }
}
