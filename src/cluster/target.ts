/**
 * A cluster as the new server: detected at start (INFO cluster: cluster_enabled:1 on --target),
 * then every connection rehome makes to "the target" goes to the cluster front (front.ts) instead,
 * and MIGRATE goes to the master owning each key's slot.
 */
import type { ProxyConfig } from '../config.js';
import { RehomeError } from '../errors.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import type { FramerLimits } from '../resp/request-framer.js';
import { ClusterFront } from './front.js';
import { isClusterNode } from './topology.js';

/** How often the slot map is read when no MOVED asked for it. */
export const SLOT_MAP_REFRESH_MS = 5_000;

/**
 * When --target is a cluster node: the config with the target replaced by a running cluster
 * front (config.cluster holds it; the caller closes it). Otherwise the config as it is.
 */
export async function withClusterTarget(config: ProxyConfig, limits: FramerLimits): Promise<ProxyConfig> {
  if (config.cluster !== undefined) return config;
  // Both asked at once. Unreachable or refusing: the pair's checks (startup.ts) say why, as for
  // any server. A cluster node as the old server would show rehome one master's keys of many.
  // --target-cluster adds seeds: any of them answering as a cluster node makes the target one.
  const seeds: Endpoint[] = [config.target, ...config.targetSeeds.map((a) => ({ ...config.target, host: a.host, port: a.port }))];
  const [sourceIs, ...seedsAre] = await Promise.all([config.source, ...seeds].map((ep) =>
    isClusterNode(ep, config.connectTimeoutMs).catch(() => false)));
  if (sourceIs) {
    throw new RehomeError('ECLUSTER', `the old server ${describeEndpoint(config.source)} is a cluster node: a cluster as the old server is not supported (only as the new one)`);
  }
  if (!seedsAre.some(Boolean)) {
    if (config.dbMap.length > 0) {
      throw new RehomeError('ECLUSTER', `--db-map merges dbs into a cluster's db 0, but the new server ${describeEndpoint(config.target)} is not a cluster node: a standalone server keeps every db as it is`);
    }
    if (config.targetSeeds.length > 0) {
      throw new RehomeError('ECLUSTER', `--target-cluster: none of ${seeds.map(describeEndpoint).join(', ')} answers as a cluster node (INFO cluster: cluster_enabled:1)`);
    }
    return config;
  }
  // The slot map is read from the seeds that answered first.
  const ordered = [...seeds.filter((_, i) => seedsAre[i]), ...seeds.filter((_, i) => !seedsAre[i])];
  const front = await ClusterFront.start(ordered, {
    connectTimeoutMs: config.connectTimeoutMs,
    refreshMs: SLOT_MAP_REFRESH_MS,
    limits,
    mergedDbs: config.dbMap,
  });
  front.countEvery(2_000);
  return { ...config, target: front.endpoint, cluster: front, clusterSeed: config.target };
}
