/**
 * A live migration into a Redis Cluster under topology changes, with the fault suite's final
 * checks: a counter workload (acked <= final - base <= acked + unknown per counter: nothing lost,
 * nothing doubled) and payload keys compared byte for byte, read straight from the cluster; no
 * key in both; the old server drained. Runs: a plain migration, a reshard of 1,000 slots while it
 * runs, and a master failover (3 masters + 3 replicas, CLUSTER FAILOVER) while it runs (the
 * migration itself and its checks: test/helpers/cluster-migration.ts). A Valkey cluster as the new
 * server is in the version matrix, test/versions/cluster-valkey.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { replicaOf } from '../helpers/cluster.js';
import { useClusterMigration } from '../helpers/cluster-migration.js';
import { sleep, waitFor } from '../helpers/util.js';

const run = useClusterMigration();

// The cluster scenarios use no TLS: the TLS run of the fault suite (REHOME_FAULT_TLS=1) skips them
// rather than run them a third time without what it is there to test.
const TLS_RUN = process.env.REHOME_FAULT_TLS === '1';
if (TLS_RUN) console.log('skipping the cluster fault scenarios in the TLS run: they use no TLS');

describe.skipIf(TLS_RUN)('migration into a cluster', () => {
  it('counters and payloads arrive whole: nothing lost, nothing doubled, old server drained', async () => {
    await run.start();
    const { results, payloads } = await run.migrate(1901, async () => sleep(1_000));
    await run.check(results, payloads);
  }, 120_000);

  it('a reshard of 1,000 slots during the migration is followed (MOVED, ASK)', async () => {
    await run.start();
    const { results, payloads } = await run.migrate(1902, async (c) => {
      await c.reshard(c.masters[0]!, c.masters[1]!, 1_000);
      await c.waitOk();
    });
    await run.check(results, payloads);
    // The slots did move: the second master serves more than a third now.
    const m = run.cluster.masters[1]!.client();
    const slots = (await m.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
    m.disconnect();
    const served = slots.filter((r) => r[2][1] === run.cluster.masters[1]!.port).reduce((a, r) => a + r[1] - r[0] + 1, 0);
    expect(served).toBeGreaterThan(5_461 + 900);
  }, 180_000);

  it('a master failover during the migration is followed (3 masters + 3 replicas)', async () => {
    await run.start({ replicas: 1 });
    const { results, payloads } = await run.migrate(1903, async (c) => {
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
    await run.check(results, payloads);
  }, 180_000);
});
