/**
 * A cluster master killed (SIGKILL) right after keys were moved into it, its replica taking over:
 * no moved key is lost. The master's replication link is cut just before the moves (CLIENT KILL
 * TYPE replica: the replica dials again within a second), so without a WAIT for the replica the
 * moves land on the master alone and die with it, their old copies already deleted. rehome copies
 * (MIGRATE ... COPY, or the proxy-side move's publish), waits for a replica (WAIT 1), and only
 * then deletes (releases) the old copies.
 */
import { describe, expect, it } from 'vitest';
import { keySlot } from '../../src/cluster/slot.js';
import { replicaOf, useClusterRig } from '../helpers/cluster.js';
import { startProxy } from '../helpers/proxy.js';
import type { RedisServer } from '../helpers/redis.js';
import { waitFor } from '../helpers/util.js';

const rig = useClusterRig();

const TLS_RUN = process.env.REHOME_FAULT_TLS === '1';

/** Slots `node` serves (CLUSTER SLOTS). */
async function slotsOf(node: RedisServer): Promise<Set<number>> {
  const c = node.client();
  const ranges = (await c.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
  c.disconnect();
  const out = new Set<number>();
  for (const [lo, hi, m] of ranges) if (m[1] === node.port) for (let s = lo; s <= hi; s++) out.add(s);
  return out;
}

// MIGRATE (COPY, WAIT, DEL) and the proxy-side move (publish, WAIT, release).
describe.skipIf(TLS_RUN).each(['migrate', 'dump'])('--move-method %s', (method) => {
it('a master killed right after moves into it: its replica takes over and no moved key is lost', async () => {
  const { cl, source } = await rig.start({ replicas: 1 });
  const victim = cl.masters[0]!;
  const replica = await replicaOf(cl, victim);
  const mine = await slotsOf(victim);
  // Keys of the victim's slots, and as many of other masters' slots.
  const all = Array.from({ length: 1_200 }, (_, i) => `k:${i}`);
  const onVictim = all.filter((k) => mine.has(keySlot(k))).slice(0, 200);
  expect(onVictim.length).toBe(200);
  const s = source.client();
  const p = s.pipeline();
  for (const k of all) p.set(k, `v:${k}`);
  await p.exec();

  // A short lease: claims a killed move left behind are taken over soon by the drain below.
  const args = ['--move-method', method, '--move-lease-ms', '1000'];
  const proxy = (rig.proxy = await startProxy({ source, target: cl.url, args }));
  const c = proxy.client();
  expect(await c.get(all.find((k) => !mine.has(keySlot(k)))!)).not.toBeNull(); // the front is up
  // Cut the victim's replication link, then move keys into it: each GET answered is a key the
  // client saw moved (its old copy gone, or about to be).
  const v = victim.client();
  await v.client('KILL', 'TYPE', 'replica');
  const acked: string[] = [];
  await Promise.all(onVictim.map(async (k) => {
    const got = await c.get(k).catch(() => undefined);
    if (got === `v:${k}`) acked.push(k);
  }));
  victim.kill('SIGKILL');
  v.disconnect();
  console.log(`[cluster-kill] ${acked.length} of ${onVictim.length} moves acknowledged before the kill`);
  expect(acked.length).toBeGreaterThan(0);
  // A replica whose link was down when its master died does not fail over by itself (Redis 7.0
  // counts its data as too old): promote it as an operator would. One that failed over already
  // answers TAKEOVER with an error.
  await waitFor(() => !victim.running, 'the master to die', 5_000, 20);
  const r = replica.client();
  await r.call('CLUSTER', 'FAILOVER', 'TAKEOVER').catch(() => undefined);
  r.disconnect();
  await waitFor(async () => (await cl.currentMasters()).includes(replica) || null, 'the replica to take over', 60_000, 100);
  await cl.waitOk();
  console.log('[cluster-kill] replica took over');
  await proxy.stop();

  // Every key is in exactly one place: the moved ones on the new master, the rest in the old
  // server; a fresh sweep then drains it.
  const direct = cl.client();
  const lost: string[] = [];
  for (const k of acked) {
    const inCluster = await direct.get(k);
    const inSource = await s.get(k);
    if (inCluster !== `v:${k}` && inSource !== `v:${k}`) lost.push(k);
  }
  expect(lost.slice(0, 10), `moved keys lost with the killed master (${lost.length} of ${acked.length})`).toEqual([]);
  console.log(`[cluster-kill] checked; ${await s.dbsize()} keys left in the old server`);
  rig.proxy = await startProxy({ source, target: `redis://127.0.0.1:${replica.port}`, sweep: true, args });
  await waitFor(async () => (await s.dbsize()) === 0, 'the old server to be drained', 60_000, 100);
  s.disconnect();
  const missing: string[] = [];
  for (const k of all) if ((await direct.get(k)) !== `v:${k}`) missing.push(k);
  direct.disconnect();
  expect(missing.slice(0, 10), `keys missing after the drain (${missing.length})`).toEqual([]);
}, 180_000);
});
