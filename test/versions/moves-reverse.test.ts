/**
 * A rollback across engines (issue 15): Redis 7.0 (old) -> Valkey 8.0.1 (new) moves by MIGRATE;
 * `rehome phase reverse` then moves every key back from Valkey 8.0.1 to Redis 7.0, which refuses
 * Valkey's payloads: reverse picks the type-aware copy, roles swapped. Under the counter workload,
 * with the fault suite's final checks.
 */
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { expectStrings, fetchStatus, noKeyInBoth, seedStrings, useAdminProxies, type AdminProxy } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { serverBinary } from '../helpers/servers.js';
import { waitFor } from '../helpers/util.js';
import { checkCounters, seedCounters, startCounterWorkload } from '../helpers/workload.js';

const valkey = serverBinary('valkey-8.0.1');
if (!valkey) console.log('skipping the Valkey 8.0.1 -> Redis 7.0 rollback test: valkey-8.0.1 not found (set REHOME_SERVERS)');

async function dataKeys(c: Redis, dbs = [0, 1]): Promise<number> {
  let n = 0;
  for (const db of dbs) {
    await c.select(db);
    n += (await c.dbsize()) - (await c.exists('__rehome:phase'));
  }
  await c.select(0);
  return n;
}

async function waitPhase(ap: AdminProxy, phase: string, timeoutMs: number): Promise<void> {
  await waitFor(async () => (await fetchStatus<{ phase: string }>(ap.admin)).phase === phase, `phase ${phase}`, timeoutMs, 100);
}

describe.skipIf(!valkey)('reverse from Valkey 8.0.1 back to Redis 7.0', () => {
  const ctx = usePair({ autoProxy: false, target: { binary: valkey ?? undefined } as { binary?: string } });
  const startAdminProxy = useAdminProxies();

  it('migrate moves by MIGRATE, reverse by the type-aware copy; nothing lost, nothing in both', async () => {
    const old = ctx.source.client();
    const neu = ctx.target.client();
    await seedStrings(old, 0, 2_000);
    const bases = await seedCounters(old, { counters: 500, seed: 9, db: 1 });
    const ap = await startAdminProxy(ctx, ['--phase', 'migrate', '--sweep-rate', '600']);
    const w = startCounterWorkload({ urls: [ap.proxy.url], clients: 4, counters: 500, db: 1, seed: 10, bases });
    await waitFor(async () => ((await dataKeys(neu)) > 600 ? true : null), 'a partial migration', 20_000, 100);
    const r = await runCli(['phase', 'reverse', '--admin', ap.admin]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    await waitPhase(ap, 'hold', 60_000); // reverse ends by itself in hold once the new server is empty
    const res = await w.stop();
    const log = ap.proxy.stdout + ap.proxy.stderr;
    expect(log).toMatch(/moves old -> new by migrate: MIGRATE to 127\.0\.0\.1:\d+ works/);
    expect(log).toMatch(/moves new -> old \(reverse\) by copy: MIGRATE refused: .*payload version or checksum/);
    expect(await dataKeys(neu)).toBe(0);
    await expectStrings(old, 0, 2_000);
    await checkCounters(res, async (k) => {
      await old.select(1);
      return Number(await old.get(k));
    });
    await old.select(0);
    await noKeyInBoth(ctx, [ap]);
    old.disconnect();
    neu.disconnect();
  }, 150_000);
});
