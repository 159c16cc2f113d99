/**
 * A cluster as the new server with the old server's dbs merged into its db 0 (--db-map N:0), and
 * plan's cluster checks from any seed: --target-cluster, or --target naming any one master.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster, flushClusterPair, getFromCluster } from '../helpers/cluster.js';
import { runCli, startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { freePort, type RedisServer, startRedis, stopAll } from '../helpers/redis.js';
import { waitFor } from '../helpers/util.js';

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

async function seedDb(db: number, keys: string[]): Promise<void> {
  const s = source.client(db);
  const p = s.pipeline();
  for (const k of keys) p.set(k, `db${db}:${k}`);
  await p.exec();
  s.disconnect();
}

const clusterGet = (key: string): Promise<string | null> => getFromCluster(cl, key);

const names = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe('--db-map N:0 with a cluster as the new server', () => {
  it('plan: keys outside db 0 FAIL without --db-map, pass with it, and key names in two merged dbs FAIL by name', async () => {
    await seedDb(0, names('zero:', 20));
    await seedDb(2, names('two:', 20));
    await seedDb(5, names('five:', 5));
    const none = await runCli(['plan', '--source', source.url, '--target', cl.url], 30_000);
    expect(none.code).toBe(1);
    expect(none.stdout).toMatch(/FAIL.*keys in db 2, 5, but a cluster has db 0 only: merge them into db 0 with --db-map 2:0 --db-map 5:0/);
    const mapped = await runCli(['plan', '--source', source.url, '--target', cl.url, '--db-map', '2:0', '--db-map', '5:0'], 30_000);
    expect(mapped.stdout).toMatch(/--db-map: db 0, 2, 5 merged into the cluster's db 0 with no key name in two of them/);
    expect(mapped.code, mapped.stdout + mapped.stderr).toBe(0);
    // The same name in db 0 and db 2, and in db 2 and db 5: each pair would become one key.
    await seedDb(2, ['zero:3', 'zero:7']);
    await seedDb(5, ['two:1']);
    const clash = await runCli(['plan', '--source', source.url, '--target', cl.url, '--db-map', '2:0', '--db-map', '5:0'], 30_000);
    expect(clash.code).toBe(1);
    expect(clash.stdout).toMatch(/FAIL.*--db-map: 3 key names are in two dbs merged into the cluster's db 0/);
    expect(clash.stdout).toMatch(/'zero:3' in db 0 and db 2/);
    expect(clash.stdout).toMatch(/'zero:7' in db 0 and db 2/);
    expect(clash.stdout).toMatch(/'two:1' in db 2 and db 5/);
    // A map to any db but 0 is a usage error; so is --db-map with a standalone new server.
    const bad = await runCli(['plan', '--source', source.url, '--target', cl.url, '--db-map', '2:1'], 30_000);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--db-map 2:1: a cluster has db 0 only/);
    const standalone = await runCli(['plan', '--source', source.url, '--target', source.url, '--db-map', '2:0'], 30_000);
    expect(standalone.code).toBe(2);
    expect(standalone.stderr).toMatch(/--db-map: none of the new server's addresses answers as a cluster node/);
  });

  it('a client in a merged db reads and writes the cluster\'s db 0; other dbs stay refused; the sweeper drains the merged dbs', async () => {
    const zero = names('zero:', 30);
    const two = names('two:', 200);
    await seedDb(0, zero);
    await seedDb(2, two);
    proxy = await startProxy({ source, target: cl.url, args: ['--db-map', '2:0'] });
    const raw = await proxy.raw();
    expect((await raw.command('SELECT', '2')).toString()).toBe('+OK\r\n');
    expect((await raw.command('GET', 'two:5')).toString()).toBe('$9\r\ndb2:two:5\r\n');
    expect((await raw.command('SET', 'written-in-2', 'x')).toString()).toBe('+OK\r\n');
    expect((await raw.command('SELECT', '3')).toString()).toBe('-ERR SELECT is not allowed in cluster mode\r\n');
    // Inside MULTI too: SELECT 2 is the cluster's SELECT 0.
    expect((await raw.command('MULTI')).toString()).toBe('+OK\r\n');
    expect((await raw.command('SELECT', '2')).toString()).toBe('+QUEUED\r\n');
    expect((await raw.command('GET', 'two:6')).toString()).toBe('+QUEUED\r\n');
    expect((await raw.command('EXEC')).toString()).toBe('*2\r\n+OK\r\n$9\r\ndb2:two:6\r\n');
    raw.close();
    // db 0 and db 2 are one db in the cluster: a client in db 0 sees what was written in db 2.
    const c0 = proxy.client();
    expect(await c0.get('written-in-2')).toBe('x');
    expect(await clusterGet('two:5')).toBe('db2:two:5');
    expect(await clusterGet('written-in-2')).toBe('x');
    const s2 = source.client(2);
    expect(await s2.exists('two:5', 'two:6', 'written-in-2')).toBe(0);
    s2.disconnect();
    await proxy.stop();
    // The sweeper walks both dbs into the cluster's db 0.
    proxy = await startProxy({ source, target: cl.url, sweep: true, args: ['--db-map', '2:0'] });
    const s = source.client();
    await waitFor(async () => {
      const ks = String(await s.info('keyspace'));
      return !/^db\d+:/m.test(ks);
    }, 'the sweeper to drain db 0 and db 2', 30_000, 100);
    s.disconnect();
    expect(await cl.dbsize()).toBe(zero.length + two.length + 1);
    for (const k of two.slice(0, 10)) expect(await clusterGet(k)).toBe(`db2:${k}`);
    const v = await runCli(['verify', '--source', source.url, '--target', cl.url, '--db-map', '2:0'], 30_000);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });

  it('--db-map with a standalone new server is refused at start', async () => {
    const other = await startRedis();
    try {
      const r = await runCli(['--listen', '127.0.0.1:0', '--source', source.url, '--target', other.url, '--db-map', '2:0', '--no-sweep'], 20_000);
      expect(r.code).not.toBe(0);
      expect(r.stderr + r.stdout).toMatch(/--db-map merges dbs into a cluster's db 0, but the new server .* is not a cluster node/);
    } finally {
      await stopAll(other);
    }
  });
});

describe('plan with a cluster from any seed', () => {
  it('--target naming one master (not the first) checks every slot and master', async () => {
    const r = await runCli(['plan', '--source', source.url, '--target', `redis://127.0.0.1:${cl.masters[2]!.port}`], 30_000);
    expect(r.stdout).toMatch(/the cluster serves every slot on 3 masters, all empty/);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });

  it('--target-cluster: the seeds are used when --target does not answer; a master that does not answer FAILs', async () => {
    const dead = `redis://127.0.0.1:${await freePort()}`;
    const seeds = `127.0.0.1:${cl.masters[1]!.port},127.0.0.1:${cl.masters[2]!.port}`;
    const r = await runCli(['plan', '--source', source.url, '--target', dead, '--target-cluster', seeds], 30_000);
    expect(r.stdout).toMatch(/the cluster serves every slot on 3 masters, all empty/);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    // A master with keys is reported, as for a standalone new server.
    const m = cl.masters[0]!.client();
    await m.set('{a}', 'x').catch(async () => m.set('{b}', 'x')).catch(async () => m.set('{c}', 'x'));
    m.disconnect();
    const full = await runCli(['plan', '--source', source.url, '--target', dead, '--target-cluster', seeds], 30_000);
    expect(full.stdout).toMatch(/WARN.*the cluster's masters are not empty/);
    const none = await runCli(['plan', '--source', source.url, '--target', dead, '--target-cluster', `127.0.0.1:${source.port}`], 30_000);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--target-cluster: none of the new server's addresses answers as a cluster node/);
  });
});
