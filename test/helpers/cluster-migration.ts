/**
 * A live migration into a cluster with the fault suite's final checks: the old server seeded with
 * counters and payload keys, a sweeping proxy into the cluster, the counter workload through it
 * while `during` changes the cluster; then the counters (acked <= final - base <= acked + unknown:
 * nothing lost, nothing doubled) and the payload keys byte for byte, read straight from the
 * cluster; the old server drained. Shared by the cluster fault scenarios and the version matrix's
 * Valkey cluster.
 */
import { expect } from 'vitest';
import { type ClusterOptions, type TestCluster, useClusterRig } from './cluster.js';
import { startProxy } from './proxy.js';
import { freePort } from './redis.js';
import { sleep, waitFor } from './util.js';
import {
  checkCounters, type CounterResults, payloadKey, payloadValue, type PayloadSet, seedCounters, seedPayloads, startCounterWorkload,
} from './workload.js';

const COUNTERS = 3_000;
const PAYLOADS = 1_500;

export interface ClusterMigration {
  /** Starts the cluster (`opts` as for startCluster) and the old server; both stop after the test. */
  start(opts?: ClusterOptions): Promise<void>;
  /** The cluster start() started. */
  readonly cluster: TestCluster;
  /** Seeds the old server, starts a sweeping proxy into the cluster and the counter workload, runs `during`. */
  migrate(seed: number, during: (c: TestCluster) => Promise<void>): Promise<{ results: CounterResults; payloads: PayloadSet }>;
  /** The final checks, straight on the cluster and the old server. */
  check(results: CounterResults, payloads: PayloadSet): Promise<void>;
}

export function useClusterMigration(): ClusterMigration {
  const rig = useClusterRig();

  /** Seeds the old server, starts a sweeping proxy into the cluster and the counter workload. */
  async function migrate(
    seed: number,
    during: (c: TestCluster) => Promise<void>,
  ): Promise<{ results: CounterResults; payloads: PayloadSet }> {
    const s = rig.source!.client();
    const bases = await seedCounters(s, { counters: COUNTERS, seed });
    const payloads = await seedPayloads(s, { count: PAYLOADS, prefix: 'pay:', db: 0, seed, maxBytes: 2048 });
    s.disconnect();
    // A slow sweeper, so that the topology changes while keys are still moving.
    const admin = `127.0.0.1:${await freePort()}`;
    const proxy = (rig.proxy = await startProxy({ source: rig.source!, target: rig.cl!.url, sweep: true, args: ['--sweep-rate', '1500', '--admin', admin] }));
    const work = startCounterWorkload({ urls: [proxy.url], clients: 8, counters: COUNTERS, seed, bases, commandTimeoutMs: 4_000 });
    await sleep(300);
    const src = rig.source!.client();
    const before = await src.dbsize();
    await during(rig.cl!);
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
    const c = rig.cl!.client();
    try {
      const summary = await checkCounters(results, async (k) => Number((await c.get(k)) ?? Number.NaN));
      expect(summary.acked).toBeGreaterThan(100);
      const bad: string[] = [];
      for (let i = 0; i < payloads.count; i++) {
        const v = await c.getBuffer(payloadKey(payloads, i));
        if (v === null || !v.equals(payloadValue(payloads, i))) bad.push(payloadKey(payloads, i).toString('latin1'));
      }
      expect(bad.slice(0, 10), `payload keys missing or changed (${bad.length})`).toEqual([]);
      expect(await rig.cl!.dbsize()).toBe(COUNTERS + PAYLOADS);
    } finally {
      c.disconnect();
    }
    const s = rig.source!.client();
    expect(await s.dbsize()).toBe(0);
    s.disconnect();
  }

  return {
    async start(opts: ClusterOptions = {}) {
      await rig.start(opts);
    },
    get cluster() {
      return rig.cl!;
    },
    migrate,
    check,
  };
}
