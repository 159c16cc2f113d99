/**
 * A Redis Cluster as the new server: detected from --target, keys moved on touch to the master
 * owning their slot, multi-key commands split or refused with CROSSSLOT as the cluster does,
 * keyspace-wide commands over every master plus the old server, SELECT refused, and the sweeper
 * draining the old server into the cluster.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startCluster, type TestCluster, flushClusterPair, getFromCluster } from '../helpers/cluster.js';
import { fetchStatus } from '../helpers/admin.js';
import { runCli, startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { freePort, type RedisServer, startRedis, stopAll } from '../helpers/redis.js';
import { errorOf, waitFor } from '../helpers/util.js';

let cl: TestCluster;
let source: RedisServer;
let proxy: ProxyHandle | null = null;

beforeAll(async () => {
  [cl, source] = await Promise.all([startCluster(), startRedis()]);
}, 90_000);
afterAll(async () => {
  await proxy?.stop();
  await cl?.stop();
  await stopAll(source);
});
afterEach(async () => {
  await proxy?.stop();
  proxy = null;
  await flushClusterPair(cl, source);
});

const clusterGet = (key: string): Promise<string | null> => getFromCluster(cl, key);

async function seed(n: number): Promise<string[]> {
  const s = source.client();
  const keys = Array.from({ length: n }, (_, i) => `key:${i}`);
  const p = s.pipeline();
  for (const k of keys) p.set(k, `v-${k}`);
  await p.exec();
  s.disconnect();
  return keys;
}

describe('cluster target', () => {
  it('moves keys on first touch to the master owning their slot', async () => {
    const keys = await seed(50);
    proxy = await startProxy({ source, target: cl.url });
    expect(proxy.stderr + proxy.stdout).toMatch(/a cluster of 3 masters/);
    const c = proxy.client();
    for (const k of keys.slice(0, 20)) expect(await c.get(k)).toBe(`v-${k}`);
    const s = source.client();
    expect(await s.dbsize()).toBe(30);
    s.disconnect();
    expect(await cl.dbsize()).toBe(20);
    for (const k of keys.slice(0, 20)) expect(await clusterGet(k)).toBe(`v-${k}`);
    // Writes of new keys land on their masters too.
    await c.set('fresh', '1');
    expect(await clusterGet('fresh')).toBe('1');
  });

  it('splits MGET, MSET, DEL, EXISTS across slots and merges the replies in order', async () => {
    const keys = await seed(10);
    proxy = await startProxy({ source, target: cl.url });
    const c = proxy.client();
    expect(await c.mget(...keys, 'missing')).toEqual([...keys.map((k) => `v-${k}`), null]);
    expect(await c.mset('a', '1', 'b', '2', 'c', '3')).toBe('OK');
    expect(await c.mget('c', 'a', 'b')).toEqual(['3', '1', '2']);
    expect(await c.exists('a', 'b', 'a', 'nope')).toBe(3);
    expect(await c.touch('a', 'b')).toBe(2);
    expect(await c.del('a', 'b', 'c', 'nope')).toBe(3);
    expect(await c.unlink(keys[0]!, keys[1]!)).toBe(2);
    expect(await cl.dbsize()).toBe(8);
  });

  it('refuses atomic commands across slots with the cluster\'s CROSSSLOT; same slot works', async () => {
    proxy = await startProxy({ source, target: cl.url });
    const c = proxy.client();
    await c.set('x', '1');
    expect(await errorOf(c.rename('x', 'y'))).toMatch(/^CROSSSLOT Keys in request don't hash to the same slot/);
    expect(await errorOf(c.msetnx('x', '1', 'y', '2'))).toMatch(/^CROSSSLOT/);
    expect(await errorOf(c.sinterstore('d', 's1', 's2'))).toMatch(/^CROSSSLOT/);
    await c.set('{u}a', '1');
    expect(await c.rename('{u}a', '{u}b')).toBe('OK');
    expect(await c.msetnx('{u}c', '1', '{u}d', '2')).toBe(1);
    expect(await c.eval("return redis.call('GET', KEYS[1])", 1, '{u}b')).toBe('1');
    expect(await errorOf(c.eval("return 1", 2, 'x', 'y'))).toMatch(/CROSSSLOT/);
  });

  it('MULTI/EXEC and WATCH on one slot run on its master; a second slot aborts the EXEC', async () => {
    proxy = await startProxy({ source, target: cl.url });
    const c = proxy.client();
    const r = await c.multi().set('{t}1', 'a').incr('{t}n').get('{t}1').exec();
    expect(r).toEqual([[null, 'OK'], [null, 1], [null, 'a']]);
    await c.watch('{t}n');
    expect(await c.multi().incr('{t}n').exec()).toEqual([[null, 2]]);
    const bad = await errorOf(c.multi().set('{t}1', 'b').set('other', 'c').exec());
    expect(bad).toMatch(/EXECABORT|CROSSSLOT/);
    expect(await clusterGet('{t}1')).toBe('a');
  });

  it('SELECT other than 0, HELLO 3 and CLIENT TRACKING are refused with defined errors', async () => {
    proxy = await startProxy({ source, target: cl.url });
    const raw = await proxy.raw();
    expect((await raw.command('SELECT', '0')).toString()).toBe('+OK\r\n');
    expect((await raw.command('SELECT', '1')).toString()).toBe('-ERR SELECT is not allowed in cluster mode\r\n');
    expect((await raw.command('SET', 'k', 'v')).toString()).toBe('+OK\r\n');
    // RESP3 and client-side caching are refused with a defined error; the client stays on RESP2.
    expect((await raw.command('HELLO', '3')).toString()).toMatch(/^-NOPROTO .*cluster as the new server speaks RESP2 only/);
    expect((await raw.command('CLIENT', 'TRACKING', 'ON')).toString()).toMatch(/^-ERR rehome: CLIENT TRACKING is not supported with a cluster/);
    expect((await raw.command('GET', 'k')).toString()).toBe('$1\r\nv\r\n');
    raw.close();
  });

  it('DBSIZE, KEYS, SCAN and RANDOMKEY cover every master and the old server once', async () => {
    const keys = await seed(40);
    proxy = await startProxy({ source, target: cl.url });
    const c = proxy.client();
    for (const k of keys.slice(0, 15)) await c.get(k);
    for (let i = 0; i < 10; i++) await c.set(`new:${i}`, 'x');
    expect(await c.dbsize()).toBe(50);
    expect((await c.keys('*')).sort()).toEqual([...keys, ...Array.from({ length: 10 }, (_, i) => `new:${i}`)].sort());
    const seen = new Set<string>();
    let cursor = '0';
    do {
      const [next, page] = await c.scan(cursor, 'COUNT', 7);
      for (const k of page) seen.add(k);
      cursor = next;
    } while (cursor !== '0');
    expect(seen.size).toBe(50);
    expect(await c.randomkey()).not.toBeNull();
    expect(await c.flushall()).toBe('OK');
    expect(await c.dbsize()).toBe(0);
    expect(await cl.dbsize()).toBe(0);
  });

  it('the sweeper drains the old server into the cluster', async () => {
    const keys = await seed(500);
    proxy = await startProxy({ source, target: cl.url, sweep: true });
    const s: Redis = source.client();
    await waitFor(async () => (await s.dbsize()) === 0, 'the sweeper to drain the source', 30_000, 100);
    s.disconnect();
    expect(await cl.dbsize()).toBe(500);
    for (const k of keys.slice(0, 25)) expect(await clusterGet(k)).toBe(`v-${k}`);
  });

  it('plan checks every slot and master, and FAILs on keys outside db 0', async () => {
    await seed(5);
    const ok = await runCli(['plan', '--source', source.url, '--target', cl.url], 30_000);
    expect(ok.stdout).toMatch(/the cluster serves every slot on 3 masters, all empty/);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    const s = source.client(3);
    await s.set('elsewhere', '1');
    s.disconnect();
    const bad = await runCli(['plan', '--source', source.url, '--target', cl.url], 30_000);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/FAIL.*keys in db 3, but a cluster has db 0 only/);
  });

  it('/status shows keys per master; verify checks every master once drained', async () => {
    await seed(300);
    const admin = `127.0.0.1:${await freePort()}`;
    proxy = await startProxy({ source, target: cl.url, sweep: true, args: ['--admin', admin, '--progress', 'off'] });
    const s = source.client();
    await waitFor(async () => (await s.dbsize()) === 0, 'the sweeper to drain the source', 30_000, 100);
    s.disconnect();
    type St = { cluster: { masters: Array<{ node: string; slots: number; keys: number }>; keys_total: number } };
    const st = await waitFor(async () => {
      const x = await fetchStatus<St>(admin);
      return x.cluster.keys_total === 300 ? x : null;
    }, 'status to count every key on the masters', 10_000, 200);
    expect(st.cluster.masters.map((m) => m.slots).reduce((a, b) => a + b, 0)).toBe(16384);
    expect(st.cluster.masters.every((m) => m.keys > 0)).toBe(true);
    const v = await runCli(['verify', '--source', source.url, '--target', cl.url], 30_000);
    expect(v.stdout.match(/verify: cluster master .*: \d+ slots, \d+ keys/g)?.length).toBe(3);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });

  it('the proxy-side move (--move-method dump) moves keys into the cluster too, sweeper included', async () => {
    const keys = await seed(200);
    const s = source.client();
    await s.set('{tag}k', 'tagged');
    await s.rpush('a-list', 'x', 'y');
    proxy = await startProxy({ source, target: cl.url, sweep: true, args: ['--move-method', 'dump'] });
    const c = proxy.client();
    expect(await c.get('{tag}k')).toBe('tagged');
    expect(await c.lrange('a-list', 0, -1)).toEqual(['x', 'y']);
    await waitFor(async () => (await s.dbsize()) === 0, 'the sweeper to drain the source', 30_000, 100);
    s.disconnect();
    // The cluster holds every key (and, until the migration has ended, a publish-once marker each).
    const all: string[] = [];
    for (const m of await cl.currentMasters()) {
      const x = m.client();
      all.push(...(await x.keys('*')));
      x.disconnect();
    }
    expect(all.filter((k) => !k.startsWith('__rehome:')).length).toBe(202);
    for (const k of keys.slice(0, 20)) expect(await clusterGet(k)).toBe(`v-${k}`);
  });

  it('phases: hold -> migrate -> drained -> reverse -> hold with a cluster as the new server', async () => {
    await seed(100);
    const admin = `127.0.0.1:${await freePort()}`;
    proxy = await startProxy({ source, target: cl.url, sweep: true, args: ['--phase', 'hold', '--admin', admin, '--progress', 'off'] });
    const c = proxy.client();
    await c.set('in-hold', '1');
    const s = source.client();
    expect(await s.get('in-hold')).toBe('1');
    expect(await cl.dbsize()).toBe(0);
    const sw = await runCli(['phase', 'migrate', '--admin', admin], 30_000);
    expect(sw.code, sw.stdout + sw.stderr).toBe(0);
    await waitFor(async () => (await s.dbsize()) === 1, 'the sweeper to move every key but the phase key', 30_000, 100);
    s.disconnect();
    const c2 = proxy.client();
    expect(await c2.get('in-hold')).toBe('1');
    expect(await clusterGet('in-hold')).toBe('1');
    type St = { phase: string };
    await waitFor(async () => (await fetchStatus<St>(admin)).phase === 'drained', 'drained', 20_000, 200);
    // Some keys written on the cluster only, on every master, then everything comes home.
    for (let i = 0; i < 30; i++) await c2.set(`late:${i}`, String(i));
    const rev = await runCli(['phase', 'reverse', '--admin', admin], 30_000);
    expect(rev.code, rev.stdout + rev.stderr).toBe(0);
    expect(await c2.get('late:7')).toBe('7'); // moved back on first touch
    await waitFor(async () => (await fetchStatus<St>(admin)).phase === 'hold', 'the reverse sweep to bring every key home', 30_000, 200);
    expect(await cl.dbsize()).toBe(0);
    const back = source.client();
    expect(await back.dbsize()).toBe(100 + 1 + 30 + 1); // the seeded keys, in-hold, late:*, the phase key
    expect(await back.get('late:29')).toBe('29');
    expect(await back.get('key:42')).toBe('v-key:42');
    back.disconnect();
  });

  it('reverse is refused when --db-map merged dbs into the cluster (they cannot be split apart again)', async () => {
    const admin = `127.0.0.1:${await freePort()}`;
    proxy = await startProxy({ source, target: cl.url, args: ['--phase', 'migrate', '--db-map', '2:0', '--admin', admin, '--progress', 'off'] });
    const rev = await runCli(['phase', 'reverse', '--admin', admin], 30_000);
    expect(rev.code).not.toBe(0);
    expect(rev.stdout + rev.stderr).toMatch(/cannot switch to reverse: --db-map merged db 2 into the cluster's db 0/);
  });

  it('--target-cluster: more seeds, used when --target does not answer', async () => {
    const keys = await seed(20);
    const dead = `redis://127.0.0.1:${await freePort()}`;
    proxy = await startProxy({ source, target: dead, args: ['--target-cluster', `127.0.0.1:${cl.masters[1]!.port},127.0.0.1:${cl.masters[2]!.port}`] });
    const c = proxy.client();
    for (const k of keys) expect(await c.get(k)).toBe(`v-${k}`);
    expect(await cl.dbsize()).toBe(20);
    const none = await runCli(['--listen', '127.0.0.1:0', '--source', source.url, '--target', dead, '--target-cluster', `127.0.0.1:${source.port}`, '--no-sweep'], 20_000);
    expect(none.code).not.toBe(0);
    expect(none.stderr + none.stdout).toMatch(/--target-cluster: none of .* answers as a cluster node/);
  });

  // Last: it leaves the cluster with a dead master.
  it('a master that is down: its slots get a clear error, every other slot keeps working, the proxy keeps serving', async () => {
    proxy = await startProxy({ source, target: cl.url });
    const c = proxy.client();
    const keys = Array.from({ length: 30 }, (_, i) => `live:${i}`);
    for (const k of keys) await c.set(k, k);
    const dead = cl.masters[2]!;
    const owner = new Map<string, number>();
    for (const m of cl.masters) {
      const x = m.client();
      for (const k of keys) if ((await x.exists(k).catch(() => 0)) === 1) owner.set(k, m.port); // MOVED elsewhere
      x.disconnect();
    }
    dead.kill('SIGKILL');
    await waitFor(() => !dead.running, 'the master to die', 5_000, 20);
    const c2 = proxy.client();
    let ok = 0;
    let refused = 0;
    for (const k of keys) {
      if (owner.get(k) === dead.port) {
        expect(await errorOf(c2.get(k))).toMatch(/^TRYAGAIN rehome: connection to cluster node .* lost \(cannot connect/);
        refused++;
      } else {
        expect(await c2.get(k)).toBe(k);
        ok++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    expect(ok).toBeGreaterThan(0);
    expect(proxy.running).toBe(true);
  });
});
