/**
 * WAITAOF before a proxy-side move releases the source's copy (docs/DESIGN.md "Moves"): with
 * --move-wait-aof auto, rehome waits for the target's AOF where the target (Redis 7.2+) runs with
 * appendonly yes, and not where it doesn't.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { expectStrings, seedStrings } from '../helpers/admin.js';
import { startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';
import { serverBinaries } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';

const open: RedisServer[] = [];
const proxies: ProxyHandle[] = [];
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.stop('SIGTERM', 3_000)));
  await stopAll(...open.splice(0));
});

/** WAITAOF calls the server has answered (INFO commandstats). */
async function waitaofCalls(s: RedisServer): Promise<number> {
  return Number(/cmdstat_waitaof:calls=(\d+)/.exec(await s.client().info('commandstats'))?.[1] ?? 0);
}

const v72 = serverBinaries('redis-7.2.6')?.['redis-7.2.6'];
describe.skipIf(!v72)('--move-wait-aof auto (target Redis 7.2.6)', () => {
  for (const aof of ['yes', 'no'] as const) {
    it(`appendonly ${aof}: ${aof === 'yes' ? 'every release waits for the target AOF' : 'no WAITAOF'}; every key moves`, async () => {
      const source = await startRedis();
      const target = await startRedis({ binary: v72!, args: ['--appendonly', aof, '--appendfsync', 'always'] });
      open.push(source, target);
      await seedStrings(source.client(), 0, 2_000);
      const p = await startProxy({ source, target, sweep: true, args: ['--move-method', 'dump', '--progress', 'off'] });
      proxies.push(p);
      const c = p.client();
      expect(await c.get('k:5')).toBe('v-0-5');
      await waitFor(async () => ((await source.client().dbsize()) === 0 ? true : null), 'the source drained', 30_000, 50);
      await expectStrings(target.client(), 0, 2_000);
      const calls = await waitaofCalls(target);
      if (aof === 'yes') expect(calls).toBeGreaterThan(0);
      else expect(calls).toBe(0);
      c.disconnect();
    }, 60_000);
  }
});
