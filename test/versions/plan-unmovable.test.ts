/**
 * `plan` names the keys the type-aware copy can't rebuild on the target (issue 15): hashes with
 * field TTLs (Redis 7.4.1) for a target without them (Redis 7.0), as a FAIL listing the keys, a
 * bounded list plus a count.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';
import { serverBinaries, serverBinary } from '../helpers/servers.js';
import { plan } from '../../src/tools/plan.js';
import { parseRedisUrl } from '../../src/upstream/endpoint.js';

const open: RedisServer[] = [];
afterEach(async () => {
  await stopAll(...open.splice(0));
});

const pair = serverBinaries('redis-7.4.1', 'redis-7.0');
describe.skipIf(!pair)('plan: keys the target cannot hold (Redis 7.4.1 -> 7.0)', () => {
  it('hashes with field TTLs: FAIL, the first ones named and the rest counted; plain hashes pass', async () => {
    const source = await startRedis({ binary: pair!['redis-7.4.1'] });
    const target = await startRedis({ binary: serverBinary('redis-7.0')! });
    open.push(source, target);
    const s = source.client();
    const p = s.pipeline();
    for (let i = 0; i < 5; i++) {
      p.hset(`ttl:${i}`, 'a', '1', 'b', '2');
      p.call('HPEXPIRE', `ttl:${i}`, 600_000, 'FIELDS', 1, 'a');
    }
    p.hset('plain', 'a', '1');
    p.set('s', 'v');
    await p.exec();
    const s3 = source.client(3);
    await s3.hset('ttl:db3', 'f', 'v');
    await s3.call('HPEXPIRE', 'ttl:db3', 600_000, 'FIELDS', 1, 'f');

    const r = await plan({ source: parseRedisUrl('source', source.url), target: parseRedisUrl('target', target.url), maxListed: 3, migrateProbes: 'forward' });
    expect(r.methods.forward?.method).toBe('copy');
    const f = r.findings.find((x) => x.check === 'types');
    expect(f, JSON.stringify(r.findings)).toBeDefined();
    expect(f!.level).toBe('fail');
    expect(f!.message).toMatch(/^6 keys the target can't hold/);
    expect(f!.details).toHaveLength(4);
    for (const d of f!.details!.slice(0, 3)) expect(d).toMatch(/^db[03] 'ttl:(\d|db3)': hash fields with their own TTL/);
    expect(f!.details![3]).toBe('... and 3 more');
    expect(f!.details!.join('\n')).not.toMatch(/plain|'s'/);
    expect(r.hardFailure).toBe(true);
  }, 60_000);

  it('no hash with field TTLs (subexpiry=0): ok without reading the keys', async () => {
    const source = await startRedis({ binary: pair!['redis-7.4.1'] });
    const target = await startRedis({ binary: serverBinary('redis-7.0')! });
    open.push(source, target);
    await source.client().hset('plain', 'a', '1');
    const r = await plan({ source: parseRedisUrl('source', source.url), target: parseRedisUrl('target', target.url), migrateProbes: 'forward' });
    const f = r.findings.find((x) => x.check === 'types');
    expect(f?.level).toBe('ok');
    expect(f?.message).toMatch(/no module loaded and no hash with field TTLs/);
  }, 60_000);
});
