/**
 * Differential test with a cluster as the new server (test/helpers/differential-cluster.ts):
 * every reply equals a plain redis's, except the CROSSSLOT refusals, which must be exactly where
 * Redis Cluster gives them (a one-node cluster is the oracle), counted.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { runClusterDifferential, startOracle } from '../helpers/differential-cluster.js';
import { startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { flushAll, type RedisServer, startRedis, stopAll } from '../helpers/redis.js';

let cl: TestCluster;
let source: RedisServer;
let ref: RedisServer;
let oracle: RedisServer;
let proxy: ProxyHandle | null = null;

beforeAll(async () => {
  [cl, source, ref, oracle] = await Promise.all([startCluster(), startRedis(), startRedis(), startOracle()]);
}, 90_000);
afterAll(async () => {
  await cl?.stop();
  await stopAll(source, ref, oracle);
});
afterEach(async () => {
  await proxy?.stop();
  proxy = null;
  await flushAll(source);
  for (const m of await cl.currentMasters()) await flushAll(m);
});

describe('differential: proxy in front of a cluster vs plain redis', () => {
  for (const mode of ['sequential', 'pipelined'] as const) {
    it(`2000 random commands (${mode}): same replies, CROSSSLOT exactly where Redis Cluster gives it`, async () => {
      proxy = await startProxy({ source, target: cl.url });
      const r = await runClusterDifferential({ source, proxy, oracle, ref }, mode);
      console.log(`[cluster differential ${mode}] seed ${r.seed}: ${r.commands} commands, ${r.crossslot} CROSSSLOT refusals (as Redis Cluster), ${r.split} cross-slot commands split and merged`);
      expect(r.crossslot).toBeGreaterThan(0);
      expect(r.split).toBeGreaterThan(0);
    });
  }
});
