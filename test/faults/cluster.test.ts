/**
 * A live migration into a Redis Cluster under topology changes, with the fault suite's final
 * checks: a counter workload (acked <= final - base <= acked + unknown per counter: nothing lost,
 * nothing doubled) and payload keys compared byte for byte, read straight from the cluster; no
 * key in both; the old server drained. Runs: a plain migration, a reshard of 1,000 slots while it
 * runs, and a master failover (3 masters + 3 replicas, CLUSTER FAILOVER) while it runs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { replicaOf, startCluster, type TestCluster } from '../helpers/cluster.js';
import { startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { freePort, type RedisServer, startRedis, stopAll } from '../helpers/redis.js';
import { serverBinary } from '../helpers/servers.js';
import { sleep, waitFor } from '../helpers/util.js';
import {
  checkCounters, type CounterResults, payloadKey, payloadValue, type PayloadSet, seedCounters, seedPayloads, startCounterWorkload,
} from '../helpers/workload.js';

let cl: TestCluster | null = null;
let source: RedisServer | null = null;
let proxy: ProxyHandle | null = null;

afterEach(async () => {
  await proxy?.stop();
  await cl?.stop();
  await stopAll(source ?? undefined);
  proxy = null;
  cl = null;
  source = null;
});

const COUNTERS = 3_000;
const PAYLOADS = 1_500;

/** Seeds the old server, starts a sweeping proxy into the cluster and the counter workload. */
async function migrate(
  seed: number,
  during: (c: TestCluster) => Promise<void>,
): Promise<{ results: CounterResults; payloads: PayloadSet }> {
  const s = source!.client();
  const bases = await seedCounters(s, { counters: COUNTERS, seed });
  const payloads = await seedPayloads(s, { count: PAYLOADS, prefix: 'pay:', db: 0, seed, maxBytes: 2048 });
  s.disconnect();
  // A slow sweeper, so that the topology changes while keys are still moving.
  const admin = `127.0.0.1:${await freePort()}`;
  proxy = await startProxy({ source: source!, target: cl!.url, sweep: true, args: ['--sweep-rate', '1500', '--admin', admin] });
  const work = startCounterWorkload({ urls: [proxy.url], clients: 8, counters: COUNTERS, seed, bases, commandTimeoutMs: 4_000 });
  await sleep(300);
  const src = source!.client();
  const before = await src.dbsize();
  await during(cl!);
  const after = await src.dbsize();
  // The proxy follows the new topology: INCRs are acknowledged again after the change (counted,
  // not timed: a loaded machine may take seconds).
  const ackedByThen = work.ackedSoFar();
  await waitFor(() => work.ackedSoFar() >= ackedByThen + 100 || null, '100 INCRs acknowledged after the change', 30_000, 20);
  const results = await work.stop();
  console.log(`[cluster] seed ${seed}: old server held ${before} keys when the change began, ${after} when it ended; ` +
    `${results.totals.acked} INCRs acked, ${results.totals.unknown} unknown ${JSON.stringify(results.totals.unknownByCause)}`);
  // The change happened while keys were still moving.
  expect(before).toBeGreaterThan(0);
  // The change is over: the rest of the drain at full speed.
  const lifted = await fetch(`http://${admin}/sweeper/rate?keys_per_sec=0`, { method: 'POST' });
  await lifted.text();
  expect(lifted.status).toBe(200);
  await waitFor(async () => (await src.dbsize()) === 0, 'the old server to be drained', 60_000, 100);
  src.disconnect();
  return { results, payloads };
}

/** The final checks, straight on the cluster and the old server. */
async function check(results: CounterResults, payloads: PayloadSet): Promise<void> {
  const c = cl!.client();
  try {
    const summary = await checkCounters(results, async (k) => Number((await c.get(k)) ?? Number.NaN));
    expect(summary.acked).toBeGreaterThan(100);
    const bad: string[] = [];
    for (let i = 0; i < payloads.count; i++) {
      const v = await c.getBuffer(payloadKey(payloads, i));
      if (v === null || !v.equals(payloadValue(payloads, i))) bad.push(payloadKey(payloads, i).toString('latin1'));
    }
    expect(bad.slice(0, 10), `payload keys missing or changed (${bad.length})`).toEqual([]);
    expect(await cl!.dbsize()).toBe(COUNTERS + PAYLOADS);
  } finally {
    c.disconnect();
  }
  const s = source!.client();
  expect(await s.dbsize()).toBe(0);
  s.disconnect();
}

// The cluster scenarios use no TLS: the TLS run of the fault suite (REHOME_FAULT_TLS=1) skips them
// rather than run them a third time without what it is there to test.
const TLS_RUN = process.env.REHOME_FAULT_TLS === '1';
if (TLS_RUN) console.log('skipping the cluster fault scenarios in the TLS run: they use no TLS');

describe.skipIf(TLS_RUN)('migration into a cluster', () => {
  it('counters and payloads arrive whole: nothing lost, nothing doubled, old server drained', async () => {
    [cl, source] = await Promise.all([startCluster(), startRedis()]);
    const { results, payloads } = await migrate(1901, async () => sleep(1_000));
    await check(results, payloads);
  }, 120_000);

  it('a reshard of 1,000 slots during the migration is followed (MOVED, ASK)', async () => {
    [cl, source] = await Promise.all([startCluster(), startRedis()]);
    const { results, payloads } = await migrate(1902, async (c) => {
      await c.reshard(c.masters[0]!, c.masters[1]!, 1_000);
      await c.waitOk();
    });
    await check(results, payloads);
    // The slots did move: the second master serves more than a third now.
    const m = cl!.masters[1]!.client();
    const slots = (await m.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
    m.disconnect();
    const served = slots.filter((r) => r[2][1] === cl!.masters[1]!.port).reduce((a, r) => a + r[1] - r[0] + 1, 0);
    expect(served).toBeGreaterThan(5_461 + 900);
  }, 180_000);

  it('a master failover during the migration is followed (3 masters + 3 replicas)', async () => {
    [cl, source] = await Promise.all([startCluster({ replicas: 1 }), startRedis()]);
    const { results, payloads } = await migrate(1903, async (c) => {
      const oldMaster = c.masters[0]!;
      const masters = await c.currentMasters();
      // Wait for the replica of the first master to have caught up, then promote it.
      const replica = await replicaOf(c, oldMaster);
      const r = replica.client();
      await r.call('CLUSTER', 'FAILOVER');
      // A manual failover aborts by itself after 5 s when the replica can't catch up (a busy
      // machine): then ask again, no sooner, so a failover under way is never restarted.
      let asked = Date.now();
      await waitFor(async () => {
        if (!(await c.currentMasters()).includes(oldMaster)) return true;
        if (Date.now() - asked > 6_000) {
          asked = Date.now();
          await r.call('CLUSTER', 'FAILOVER').catch(() => undefined);
        }
        return null;
      }, 'the replica to take over', 60_000, 100);
      r.disconnect();
      await c.waitOk();
      expect((await c.currentMasters()).length).toBe(masters.length);
    });
    await check(results, payloads);
  }, 180_000);

  const valkey = serverBinary('valkey-8.0.1');
  it.skipIf(valkey === null)('Valkey 8.0.1 cluster as the new server (Redis 7.0 old server)', async () => {
    [cl, source] = await Promise.all([startCluster({ binary: valkey! }), startRedis()]);
    const { results, payloads } = await migrate(1904, async () => sleep(800));
    await check(results, payloads);
  }, 120_000);
});
