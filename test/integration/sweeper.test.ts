/**
 * The background sweeper (docs/DESIGN.md "The sweeper"): it drains every db of the source while clients
 * keep writing through the proxy, can be paused, resumed and rate-limited over the admin endpoint
 * and the `rehome sweeper` CLI, moves big keys alone, lets only one of several proxies sweep (the
 * lease) while staying safe when two do, and pauses itself when the source restarts.
 *
 * Every proxy here is started with the sweeper on (startProxy({ sweep: true })) and an admin
 * endpoint on a free port. The source is always seeded before the proxy starts: a sweeper that
 * starts on an empty source declares the migration drained at once.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { readValue, seedAllTypes } from '../helpers/data.js';
import {
  expectStrings,
  fetchStatus,
  noKeyInBoth,
  seedStrings,
  useAdminProxies,
  waitDrained,
} from '../helpers/admin.js';
import { usePair, type PairContext } from '../helpers/fixture.js';
import { ALL_DBS, keysByDb } from '../helpers/invariant.js';
import { runCli, type ProxyHandle } from '../helpers/proxy.js';
import { sleep, waitFor, withTimeout } from '../helpers/util.js';
import { KnownAbsentCache } from '../../src/migration/absent-cache.js';
import { Mover } from '../../src/migration/mover.js';
import { ControlPool } from '../../src/upstream/control.js';
import { parseRedisUrl } from '../../src/upstream/endpoint.js';

// ------------------------------------------------------------------ helpers (local to this file)

const sweepProxy = (ctx: PairContext, args: string[] = []) => startAdmin(ctx, args, true);
const startAdmin = useAdminProxies();

interface Status {
  phase: 'migrating' | 'drained';
  keys: {
    initial_in_source: number;
    remaining_total: number;
    remaining_per_db: Record<string, number>;
    moved_on_touch: number;
    moved_by_sweeper: number;
    in_both_resolved: number;
  };
  rate_keys_per_s: number;
  eta_s: number | null;
  sweeper: {
    state: string;
    pause_reason: string | null;
    batch_size?: number;
    rate_limit?: number | null;
  };
  big_keys: { total: number; listed: Array<{ db: number; key: string; bytes: number; ms: number; ok: boolean }> };
  errors_by_kind: Record<string, number>;
  source_restarted: null | { at: string; run_id: string };
  clients: number;
}


async function post(admin: string, path: string): Promise<{ code: number; body: Record<string, unknown> }> {
  const r = await fetch(`http://${admin}${path}`, { method: 'POST' });
  return { code: r.status, body: (await r.json()) as Record<string, unknown> };
}




/** Keys in the source, all dbs (INFO keyspace). */
async function sourceKeys(c: Redis): Promise<number> {
  const text = await c.info('keyspace');
  let n = 0;
  for (const m of text.matchAll(/^db\d+:keys=(\d+)/gm)) n += Number(m[1]);
  return n;
}

async function expectSourceEmpty(ctx: PairContext): Promise<void> {
  const src = await keysByDb(ctx.source, ALL_DBS);
  const left = [...src.entries()].filter(([, ks]) => ks.length > 0).map(([db, ks]) => `db${db}: ${ks.length} (${ks.slice(0, 5).join(', ')})`);
  expect(left, 'keys left in the source').toEqual([]);
}


interface WriterTally {
  incrs: number;
  sets: Array<{ db: number; key: string; value: string }>;
  appends: Map<string, number>;
  errors: string[];
}

/**
 * Runs `n` writers until stop() is called. Writer w works in db dbs[w % dbs.length] through
 * proxies[w % proxies.length]: INCR ctr:w, SET new:w:i, APPEND app:w:(i % 20). Only acknowledged
 * commands are counted; errors are collected.
 */
function startWriters(
  proxies: ProxyHandle[],
  n: number,
  dbs: number[],
): { tallies: WriterTally[]; stop: () => Promise<void> } {
  let stopped = false;
  const tallies: WriterTally[] = [];
  const loops: Array<Promise<void>> = [];
  for (let w = 0; w < n; w++) {
    const db = dbs[w % dbs.length]!;
    const t: WriterTally = { incrs: 0, sets: [], appends: new Map(), errors: [] };
    tallies.push(t);
    const c = proxies[w % proxies.length]!.client({ db });
    loops.push(
      (async () => {
        for (let i = 0; !stopped; i++) {
          try {
            await c.incr(`ctr:${w}`);
            t.incrs++;
            const key = `new:${w}:${i}`;
            const value = `n-${w}-${i}`;
            await c.set(key, value);
            t.sets.push({ db, key, value });
            const ak = `app:${w}:${i % 20}`;
            await c.append(ak, 'x');
            t.appends.set(ak, (t.appends.get(ak) ?? 0) + 1);
          } catch (e) {
            t.errors.push((e as Error).message);
            if (t.errors.length > 20) return;
          }
          await sleep(1);
        }
      })(),
    );
  }
  return {
    tallies,
    async stop() {
      stopped = true;
      await withTimeout(Promise.all(loops), 15_000, 'writers to stop');
    },
  };
}

/** Seeds ctr:w = 1000 and app:w:0..19 = 'base' in the source for each writer. */
async function seedWriterKeys(s: Redis, n: number, dbs: number[]): Promise<number> {
  let count = 0;
  for (let w = 0; w < n; w++) {
    await s.select(dbs[w % dbs.length]!);
    await s.set(`ctr:${w}`, '1000');
    count++;
    for (let j = 0; j < 20; j++) {
      await s.set(`app:${w}:${j}`, 'base');
      count++;
    }
  }
  await s.select(0);
  return count;
}

/** Checks counters, SET keys and APPENDed keys on the target against the writers' tallies. */
async function expectWrites(ctx: PairContext, tallies: WriterTally[], dbs: number[]): Promise<void> {
  const t = ctx.target.client();
  for (let w = 0; w < tallies.length; w++) {
    const tally = tallies[w]!;
    expect(tally.errors.slice(0, 5), `writer ${w} got errors`).toEqual([]);
    await t.select(dbs[w % dbs.length]!);
    expect(await t.get(`ctr:${w}`), `ctr:${w} = 1000 + acknowledged INCRs`).toBe(String(1000 + tally.incrs));
    for (let j = 0; j < 20; j++) {
      const k = `app:${w}:${j}`;
      expect(await t.get(k), k).toBe(`base${'x'.repeat(tally.appends.get(k) ?? 0)}`);
    }
    for (let i = 0; i < tally.sets.length; i += 500) {
      const chunk = tally.sets.slice(i, i + 500);
      const vals = await t.mget(...chunk.map((x) => x.key));
      const bad = chunk.filter((x, j) => vals[j] !== x.value).map((x) => x.key);
      expect(bad.slice(0, 10), `writer ${w}: acknowledged SETs missing on the target`).toEqual([]);
    }
  }
  await t.select(0);
}

// ------------------------------------------------------------------ tests

describe('sweeper: drain', () => {
  const ctx = usePair({ autoProxy: false });

  it('drains every type in dbs 0, 2 and 5 while 4 clients write through the proxy', async () => {
    const s = ctx.source.client();
    const snap = await seedAllTypes(s, { dbs: [0, 2, 5], n: 50, ttlMs: 600_000 });
    const dbs = [0, 2, 5, 0];
    const extra = await seedWriterKeys(s, 4, dbs);
    const seeded = snap.records.length + extra;
    expect(await sourceKeys(s)).toBe(seeded);

    // About 2.5 s of sweeping (1,884 keys), so the writers overlap the migration.
    const sp = await sweepProxy(ctx, ['--sweep-rate', '750']);
    const writers = startWriters([sp.proxy], 4, dbs);
    const started = Date.now();
    let st: Status;
    try {
      st = await waitDrained<Status>(sp, 25_000);
      const minRun = 1_500 - (Date.now() - started);
      await sleep(Math.max(300, minRun)); // keep writing a little after the drain too
    } finally {
      await writers.stop();
    }
    expect(writers.tallies.reduce((a, t) => a + t.incrs, 0)).toBeGreaterThan(20);

    await expectSourceEmpty(ctx);
    expect(await snap.verify(ctx.target.client(), { ttlToleranceMs: 10_000 })).toEqual([]);
    // Served through the proxy after the drain too (one key of each type and TTL variant per db).
    const pc = sp.proxy.client();
    for (const r of snap.records.filter((x) => /:(ttl:)?1$/.test(x.key))) {
      await pc.select(r.db);
      expect(await readValue(pc, r.type, r.key), `db${r.db} ${r.key} through the proxy`).toEqual(r.value);
    }
    await pc.select(0);
    await expectWrites(ctx, writers.tallies, dbs);

    st = await fetchStatus<Status>(sp.admin);
    expect(st.phase).toBe('drained');
    expect(st.sweeper.state).toBe('drained');
    expect(st.keys.remaining_total).toBe(0);
    expect(st.keys.initial_in_source).toBe(seeded);
    expect(st.keys.moved_by_sweeper).toBeGreaterThan(0);
    expect(sp.proxy.stderr).toMatch(/migration complete/);
    await noKeyInBoth(ctx, [sp]);
    // Every seeded key was moved exactly once, by a touch or by the sweeper (checked last: a
    // miscount is a reporting bug, not a data bug).
    expect(st.keys.moved_on_touch + st.keys.moved_by_sweeper, JSON.stringify(st.keys)).toBe(seeded);
  });

  it('--exit-when-drained: the proxy exits 0 by itself once the source is empty', async () => {
    const s = ctx.source.client();
    const snap = await seedAllTypes(s, { dbs: [0, 3], n: 25 });
    await seedStrings(s, 7, 400);
    const sp = await sweepProxy(ctx, ['--exit-when-drained']);
    const exit = await withTimeout(sp.proxy.exited, 20_000, 'proxy to exit after the drain');
    expect(exit, `stderr:\n${sp.proxy.stderr}`).toEqual({ code: 0, signal: null });
    expect(sp.proxy.stderr).toMatch(/migration complete/);
    await expectSourceEmpty(ctx);
    expect(await snap.verify(ctx.target.client())).toEqual([]);
    await expectStrings(ctx.target.client(), 7, 400);
    await noKeyInBoth(ctx, [sp]);
  });
});

describe('sweeper: control', () => {
  const ctx = usePair({ autoProxy: false });

  it('pause and resume over HTTP and with `rehome sweeper`: nothing moves while paused', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 3000);
    const sp = await sweepProxy(ctx, ['--sweep-rate', '200']);
    await waitFor(async () => (await s.dbsize()) < 2950, 'the sweeper to start moving keys', 10_000, 50);

    // Pause over HTTP.
    const p1 = await post(sp.admin, '/sweeper/pause');
    expect(p1.code).toBe(200);
    expect(p1.body.sweeper).toBe('paused');
    await sleep(500); // the batch in flight may still finish
    const a = await s.dbsize();
    await sleep(1_000);
    const b = await s.dbsize();
    // Soft: a failure here is reported but the rest of the test (drain, invariant) still runs.
    expect.soft(b, 'source DBSIZE while paused').toBe(a);
    expect(a).toBeGreaterThan(0);
    let st = await fetchStatus<Status>(sp.admin);
    expect(st.sweeper.state).toBe('paused');
    expect(st.sweeper.pause_reason).toMatch(/operator/);
    expect.soft(st.keys.remaining_total).toBe(a);

    // Resume with the CLI: keys move again.
    const r1 = await runCli(['sweeper', 'resume', '--admin', sp.admin]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(JSON.parse(r1.stdout).sweeper).not.toBe('paused');
    await waitFor(async () => (await s.dbsize()) < b - 20, 'keys to move again after resume', 5_000, 50);

    // Pause with the CLI.
    const r2 = await runCli(['sweeper', 'pause', '--admin', sp.admin]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(JSON.parse(r2.stdout).sweeper).toBe('paused');
    await sleep(500);
    const c = await s.dbsize();
    await sleep(1_000);
    expect.soft(await s.dbsize(), 'source DBSIZE while paused (CLI)').toBe(c);
    st = await fetchStatus<Status>(sp.admin);
    expect(st.sweeper.state).toBe('paused');
    expect(st.phase).toBe('migrating');

    // Resume over HTTP, lift the limit, and it drains.
    expect((await post(sp.admin, '/sweeper/resume')).code).toBe(200);
    expect((await post(sp.admin, '/sweeper/rate?keys_per_sec=0')).code).toBe(200);
    st = await waitDrained<Status>(sp, 15_000);
    expect(st.sweeper.state).toBe('drained');
    expect(sp.proxy.stderr).toMatch(/sweeper paused/);
    expect(sp.proxy.stderr).toMatch(/sweeper resumed/);
    await expectSourceEmpty(ctx);
    await expectStrings(ctx.target.client(), 0, 3000);
    await noKeyInBoth(ctx, [sp]);
  });

  it('--sweep-rate 500 moves about 500 keys/s; POST /sweeper/rate changes the limit', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 3000);
    const sp = await sweepProxy(ctx, ['--sweep-rate', '500']);
    let st = await fetchStatus<Status>(sp.admin);
    expect(st.sweeper.rate_limit).toBe(500);
    await waitFor(async () => (await s.dbsize()) < 3000, 'the sweeper to start', 10_000, 20);

    const measure = async (ms: number): Promise<number> => {
      const d0 = await s.dbsize();
      const t0 = performance.now();
      await sleep(ms);
      const d1 = await s.dbsize();
      return ((d0 - d1) * 1000) / (performance.now() - t0);
    };
    const r500 = await measure(2_000);
    expect.soft(r500, `keys/s at --sweep-rate 500`).toBeGreaterThanOrEqual(250);
    expect.soft(r500, `keys/s at --sweep-rate 500`).toBeLessThanOrEqual(750);

    const p = await post(sp.admin, '/sweeper/rate?keys_per_sec=100');
    expect(p.code).toBe(200);
    expect(p.body.rate_limit).toBe(100);
    st = await fetchStatus<Status>(sp.admin);
    expect(st.sweeper.rate_limit).toBe(100);
    await sleep(600);
    const r100 = await measure(2_000);
    expect.soft(r100, `keys/s after POST /sweeper/rate?keys_per_sec=100`).toBeGreaterThanOrEqual(50);
    expect.soft(r100, `keys/s after POST /sweeper/rate?keys_per_sec=100`).toBeLessThanOrEqual(150);

    // Bad values are refused and change nothing.
    expect((await post(sp.admin, '/sweeper/rate?keys_per_sec=-1')).code).toBe(400);
    expect((await post(sp.admin, '/sweeper/rate?keys_per_sec=abc')).code).toBe(400);
    expect((await fetchStatus<Status>(sp.admin)).sweeper.rate_limit).toBe(100);

    // Lift the limit with the CLI: the rest drains quickly.
    const r = await runCli(['sweeper', 'rate', '0', '--admin', sp.admin]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).rate_limit).toBeNull();
    st = await waitDrained<Status>(sp, 10_000);
    await expectSourceEmpty(ctx);
    await expectStrings(ctx.target.client(), 0, 3000);
    await noKeyInBoth(ctx, [sp]);
    expect(st.keys.moved_by_sweeper).toBe(3000);
  });

  it('a 12 MB key is moved alone and reported (--big-key-mb 4)', async () => {
    const s = ctx.source.client();
    const big = randomBytes(12 * 1024 * 1024);
    await s.set('big', big);
    await seedStrings(s, 0, 300);
    await s.select(1);
    await s.rpush('biglist', ...Array.from({ length: 50 }, (_, i) => `${i}-${'y'.repeat(100)}`));
    await s.select(0);
    const sp = await sweepProxy(ctx, ['--big-key-mb', '4']);
    const st = await waitDrained<Status>(sp, 30_000);
    expect(st.big_keys.total, JSON.stringify(st.big_keys)).toBe(1);
    const rep = st.big_keys.listed.find((b) => b.key === 'big');
    expect(rep, JSON.stringify(st.big_keys)).toBeDefined();
    expect(rep!.db).toBe(0);
    expect(rep!.ok).toBe(true);
    expect(rep!.bytes).toBeGreaterThanOrEqual(12 * 1024 * 1024);
    expect(rep!.ms).toBeGreaterThan(0);
    expect(sp.proxy.stderr).toMatch(/big key/);

    const t = ctx.target.client();
    const got = await t.getBuffer('big');
    expect(got?.length).toBe(big.length);
    expect(got!.equals(big), 'the big value is intact on the target').toBe(true);
    expect(await t.pttl('big')).toBe(-1);
    await expectStrings(t, 0, 300);
    const t1 = ctx.target.client(1);
    expect(await t1.llen('biglist')).toBe(50);

    const cli = await runCli(['status', '--admin', sp.admin]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/^big keys\s+1/m);
    expect(cli.stdout).toMatch(/^  db0 big \d+\.\d MB in \d+ ms$/m);
    await expectSourceEmpty(ctx);
    await noKeyInBoth(ctx, [sp]);
  });
});

describe('sweeper: several proxies on one pair', () => {
  const ctx = usePair({ autoProxy: false });

  it('only one of two proxies sweeps (the other is on standby); both see the drain', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 1500);
    await seedStrings(s, 1, 1500);
    // Slow, so the sweep outlasts the second proxy's start-up however loaded the machine is; full
    // speed once one was seen sweeping while the other stood by.
    const a = await sweepProxy(ctx, ['--sweep-rate', '100']);
    const b = await sweepProxy(ctx, ['--sweep-rate', '100']);
    const oneSweeping = ([x, y]: [string, string]) =>
      (x === 'sweeping' && y === 'standby') || (x === 'standby' && y === 'sweeping');
    const samples: Array<[string, string]> = [];
    let fullSpeed = false;
    const deadline = Date.now() + 25_000;
    for (;;) {
      const [sa, sb] = await Promise.all([fetchStatus<Status>(a.admin), fetchStatus<Status>(b.admin)]);
      samples.push([sa.sweeper.state, sb.sweeper.state]);
      if (sa.phase === 'drained' && sb.phase === 'drained') break;
      if (!fullSpeed && oneSweeping(samples[samples.length - 1]!)) {
        fullSpeed = true;
        for (const p of [a, b]) expect((await post(p.admin, '/sweeper/rate?keys_per_sec=0')).code).toBe(200);
      }
      if (Date.now() > deadline) {
        throw new Error(`not both drained in time: ${JSON.stringify(sa)} / ${JSON.stringify(sb)}\nA:\n${a.proxy.stderr}\nB:\n${b.proxy.stderr}`);
      }
      await sleep(100);
    }
    const both = samples.filter(([x, y]) => x === 'sweeping' && y === 'sweeping');
    expect(both.length, `samples with both sweeping (of ${samples.length})`).toBe(0);
    expect(samples.some(oneSweeping), `one sweeping while the other is on standby; samples: ${JSON.stringify(samples.slice(0, 40))}`).toBe(true);
    const [fa, fb] = await Promise.all([fetchStatus<Status>(a.admin), fetchStatus<Status>(b.admin)]);
    expect(fa.keys.moved_by_sweeper + fb.keys.moved_by_sweeper).toBe(3000);
    expect(fa.sweeper.state).toBe('drained');
    expect(fb.sweeper.state).toBe('drained');
    expect(a.proxy.stderr + b.proxy.stderr).toMatch(/standby/);
    await expectSourceEmpty(ctx);
    await expectStrings(ctx.target.client(), 0, 1500);
    await expectStrings(ctx.target.client(), 1, 1500);
    await noKeyInBoth(ctx, [a, b]);
  });

  it('two proxies started together, with writers going through both', async () => {
    const s = ctx.source.client();
    const snap = await seedAllTypes(s, { dbs: [0, 4], n: 30 });
    const dbs = [0, 4, 0, 4];
    const extra = await seedWriterKeys(s, 4, dbs);
    // About 2.5 s of sweeping (804 keys), so the writers and readers overlap the migration.
    const [a, b] = await Promise.all([
      sweepProxy(ctx, ['--sweep-rate', '300']),
      sweepProxy(ctx, ['--sweep-rate', '300']),
    ]);
    const writers = startWriters([a.proxy, b.proxy], 4, dbs);
    // Readers through both proxies check seeded values while keys move.
    const readErrors: string[] = [];
    const readers = [a, b].map(async (p, i) => {
      const c = p.proxy.client();
      for (let round = 0; round < 3; round++) {
        const sample = snap.records.filter((_, j) => (j + i + round) % 7 === 0);
        for (const r of sample) {
          await c.select(r.db);
          const ty = await c.type(r.key);
          if (ty !== r.type) readErrors.push(`proxy ${i}: db${r.db} ${r.key} TYPE ${ty}`);
        }
        await sleep(200);
      }
    });
    try {
      await Promise.all(readers);
      await Promise.all([waitDrained<Status>(a, 25_000), waitDrained<Status>(b, 25_000)]);
      await sleep(300);
    } finally {
      await writers.stop();
    }
    expect(readErrors).toEqual([]);
    await expectSourceEmpty(ctx);
    expect(await snap.verify(ctx.target.client())).toEqual([]);
    await expectWrites(ctx, writers.tallies, dbs);
    const [fa, fb] = await Promise.all([fetchStatus<Status>(a.admin), fetchStatus<Status>(b.admin)]);
    const moved = fa.keys.moved_on_touch + fa.keys.moved_by_sweeper + fb.keys.moved_on_touch + fb.keys.moved_by_sweeper;
    await noKeyInBoth(ctx, [a, b]);
    // Checked last (reporting, not data): each seeded key counted as moved once over both proxies.
    expect(moved, `${JSON.stringify(fa.keys)} / ${JSON.stringify(fb.keys)}`).toBe(snap.records.length + extra);
  });
});

describe('sweeper: two sweeping at once (no lease: CLIENT denied by ACL) stays safe', () => {
  const ctx = usePair({
    autoProxy: false,
    source: {
      args: ['--user', 'mover', 'on', '>pw', '~*', '&*', '+@all', '-client'],
      username: 'mover',
      password: 'pw',
    },
  });

  it('both proxies sweep the same keys; each key moves once, values intact', async () => {
    const s = ctx.source.client();
    const snap = await seedAllTypes(s, { dbs: [0, 1], n: 40 });
    await seedStrings(s, 0, 3000);
    const [a, b] = await Promise.all([sweepProxy(ctx), sweepProxy(ctx)]);
    let sawBoth = false;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const [sa, sb] = await Promise.all([fetchStatus<Status>(a.admin), fetchStatus<Status>(b.admin)]);
      if (sa.sweeper.state === 'sweeping' && sb.sweeper.state === 'sweeping') sawBoth = true;
      if (sa.phase === 'drained' && sb.phase === 'drained') break;
      if (Date.now() > deadline) throw new Error(`not drained: ${JSON.stringify(sa)} / ${JSON.stringify(sb)}\nA:\n${a.proxy.stderr}\nB:\n${b.proxy.stderr}`);
      await sleep(20);
    }
    const [fa, fb] = await Promise.all([fetchStatus<Status>(a.admin), fetchStatus<Status>(b.admin)]);
    // Not asserted (drain may be quicker than sampling), only reported on failure below.
    const info = `sawBoth=${sawBoth} A=${JSON.stringify(fa.keys)} B=${JSON.stringify(fb.keys)}`;
    await expectSourceEmpty(ctx);
    expect(await snap.verify(ctx.target.client())).toEqual([]);
    await expectStrings(ctx.target.client(), 0, 3000);
    await noKeyInBoth(ctx, [a, b]);
    // Checked last (reporting, not data): the two sweepers' counts add up to the keys that existed.
    expect(fa.keys.moved_by_sweeper + fb.keys.moved_by_sweeper, info).toBe(snap.records.length + 3000);
  });
});

describe('sweeper: scripts denied on the source (EVAL refused by ACL)', () => {
  const ctx = usePair({
    autoProxy: false,
    source: {
      args: ['--user', 'mover', 'on', '>pw', '~*', '&*', '+@all', '-eval', '-evalsha', '-eval_ro'],
      username: 'mover',
      password: 'pw',
    },
  });

  it('falls back to moving batches from the proxy, and drains', async () => {
    const s = ctx.source.client();
    const snap = await seedAllTypes(s, { dbs: [0, 2], n: 30 });
    await seedStrings(s, 0, 2000);
    const a = await sweepProxy(ctx);
    await waitDrained<Status>(a, 20_000);
    expect(a.proxy.stderr).toMatch(/server-side sweep step unavailable/);
    await expectSourceEmpty(ctx);
    expect(await snap.verify(ctx.target.client())).toEqual([]);
    await expectStrings(ctx.target.client(), 0, 2000);
    await noKeyInBoth(ctx, [a]);
    expect((await fetchStatus<Status>(a.admin)).keys.moved_by_sweeper).toBe(snap.records.length + 2000);
  });
});

describe('sweeper: the target refuses keys (out of memory), then recovers', () => {
  const ctx = usePair({ autoProxy: false });

  it('failed batches are probed, keys stay in the source, errors are counted, then it drains', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 2000);
    const t = ctx.target.client();
    expect(await t.call('CONFIG', 'SET', 'maxmemory', '1')).toBe('OK');
    // --force: the pre-flight memory check rightly fails on this target.
    const a = await sweepProxy(ctx, ['--force']);
    try {
      await waitFor(async () => (await fetchStatus<Status>(a.admin)).sweeper.state === 'sweeping', 'sweeping', 10_000, 50);
      await sleep(1_500);
      const st = await fetchStatus<Status>(a.admin);
      expect(st.phase).toBe('migrating');
      expect(Object.keys(st.errors_by_kind)).toContain('oom');
      expect(await s.dbsize()).toBe(2000);
      await noKeyInBoth(ctx, [a]);
    } finally {
      await t.call('CONFIG', 'SET', 'maxmemory', '0');
    }
    await waitDrained<Status>(a, 20_000);
    await expectSourceEmpty(ctx);
    await expectStrings(t, 0, 2000);
    await noKeyInBoth(ctx, [a]);
  });
});

describe('sweeper: source restart mid-migration', () => {
  const ctx = usePair({
    autoProxy: false,
    source: { args: ['--appendonly', 'yes', '--appendfsync', 'always'] },
  });

  it('warns, records the restart, pauses until resumed, then drains', async () => {
    let s = ctx.source.client();
    await seedStrings(s, 0, 2000);
    await seedStrings(s, 3, 500);
    const before = /run_id:(\w+)/.exec(await s.info('server'))![1];
    const sp = await sweepProxy(ctx, ['--sweep-rate', '200']);
    await waitFor(async () => (await s.dbsize()) < 1900, 'the sweeper to move some keys', 10_000, 50);
    let st = await fetchStatus<Status>(sp.admin);
    expect(st.source_restarted).toBeNull();

    await ctx.source.restart({ keepData: true });
    s = ctx.source.client();
    const after = /run_id:(\w+)/.exec(await s.info('server'))![1];
    expect(after).not.toBe(before);
    const left = await sourceKeys(s);
    expect(left, 'the source kept its data over the restart').toBeGreaterThan(1000);

    await waitFor(() => /WARNING: the source restarted/.test(sp.proxy.stderr), "the proxy's restart WARNING", 10_000, 50);
    st = await waitFor(async () => {
      const x = await fetchStatus<Status>(sp.admin);
      return x.source_restarted !== null && x.sweeper.state === 'paused' ? x : null;
    }, 'status to show the restart and a paused sweeper', 5_000, 50);
    expect(st.source_restarted!.run_id).toBe(after);
    expect(Number.isNaN(Date.parse(st.source_restarted!.at))).toBe(false);
    expect(st.sweeper.pause_reason).toMatch(/restart/);
    const cliStatus = await runCli(['status', '--admin', sp.admin]);
    expect(cliStatus.code).toBe(0);
    expect(cliStatus.stdout).toMatch(/source restarted/);

    // Paused: nothing moves; a touch through the proxy still works.
    await sleep(300);
    const p0 = await sourceKeys(s);
    const c = sp.proxy.client();
    await c.select(3);
    expect(await c.get('k:7')).toBe('v-3-7');
    await c.select(0);
    await sleep(1_200);
    expect.soft(await sourceKeys(s), 'source keys while paused (minus the one touched)').toBe(p0 - 1);

    const r = await runCli(['sweeper', 'resume', '--admin', sp.admin]);
    expect(r.code, r.stderr).toBe(0);
    expect((await runCli(['sweeper', 'rate', '0', '--admin', sp.admin])).code).toBe(0);
    st = await waitDrained<Status>(sp, 20_000);
    expect(st.sweeper.state).toBe('drained');
    await expectSourceEmpty(ctx);
    await expectStrings(ctx.target.client(), 0, 2000);
    await expectStrings(ctx.target.client(), 3, 500);
    await noKeyInBoth(ctx, [sp]);
  });
});

describe('sweeper: the server-side step (Mover.sweepStep) on its own', () => {
  const ctx = usePair({ autoProxy: false });

  it("moves every key but rehome's own (`__rehome:*`) and counts exactly what moved", async () => {
    const s = ctx.source.client(4);
    const reserved = ['__rehome:phase-copy', '__rehome:plan-probe:1', '__rehome:'];
    // Names close to the prefix are ordinary keys and move.
    const lookalikes = ['__rehome', '__rehome;x', '_rehome:x', '__REHOME:x', 'x__rehome:', '_', '__', ' __rehome:'];
    for (const k of reserved) await s.set(k, 'mine');
    for (const k of lookalikes) await s.set(k, `v-${k}`);
    await seedStrings(s, 4, 3000);
    await s.select(4);
    await s.hset('h', 'f', '1');
    await s.rpush('l', 'a', 'b');
    await s.set('gone', 'x', 'PX', 1); // expired by the time the step runs: not counted as moved
    await sleep(20);

    const opts = { commandTimeoutMs: 5_000, connectTimeoutMs: 2_000 };
    const src = new ControlPool(parseRedisUrl('source', ctx.source.url), opts, 'source');
    const tgt = new ControlPool(parseRedisUrl('target', ctx.target.url), opts, 'target');
    const mover = new Mover(src, tgt, new KnownAbsentCache(100), { host: '127.0.0.1', port: ctx.target.port, timeoutMs: 2_000 });
    try {
      let moved = 0;
      let steps = 0;
      let cursor = '0';
      do {
        const r = await mover.sweepStep(4, cursor, 100, 1 << 20, 2_000);
        expect(r.failed).toBe(0);
        expect(r.big).toEqual([]);
        expect(r.heldMs).toBeGreaterThanOrEqual(0);
        moved += r.moved;
        steps++;
        cursor = r.cursor;
      } while (cursor !== '0');
      expect(steps).toBeGreaterThan(10);

      const expected = lookalikes.length + 3000 + 2;
      expect(moved, 'keys counted as moved').toBe(expected);
      expect(mover.stats.keysMovedBySweeper).toBe(expected);
      // Every step that handed keys to MIGRATE counts as a MIGRATE call (not only failed ones).
      expect(mover.stats.migrateCalls).toBeGreaterThan(steps / 2);
      expect((await s.keys('*')).sort(), 'left in the source: only the reserved keys').toEqual([...reserved].sort());
      const t = ctx.target.client(4);
      for (const k of reserved) expect(await t.exists(k), k).toBe(0);
      for (const k of lookalikes) expect(await t.get(k), k).toBe(`v-${k}`);
      expect(await t.hget('h', 'f')).toBe('1');
      expect(await t.lrange('l', 0, -1)).toEqual(['a', 'b']);
      expect(await t.exists('gone')).toBe(0);
      await expectStrings(t, 4, 3000);
    } finally {
      await Promise.all([src.close(), tgt.close()]);
    }
  });
});

describe('sweeper: touches first', () => {
  const ctx = usePair({ autoProxy: false });

  it('takes small steps while clients touch unmoved keys, full ones when nobody does', async () => {
    // Enough for the reader to touch unmoved keys: the sweep takes small steps from its first touch.
    const N = 10_000;
    await seedStrings(ctx.source.client(), 0, N);
    const sp = await sweepProxy(ctx);
    const c = sp.proxy.client();
    let reads = 0;
    let stop = false;
    const reader = (async () => {
      while (!stop) {
        const i = Math.floor(Math.random() * N);
        expect(await c.get(`k:${i}`)).toBe(`v-0-${i}`);
        reads++;
      }
    })();
    const st = await waitDrained<{ phase: string; sweeper: { small_steps_for_touches: number } }>(sp, 30_000);
    stop = true;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect(st.sweeper.small_steps_for_touches).toBeGreaterThan(0);
    await expectStrings(ctx.target.client(), 0, N);
    c.disconnect();
  });

  it('with no client, every step is a full one', async () => {
    await seedStrings(ctx.source.client(), 0, 20_000);
    const sp = await sweepProxy(ctx);
    const st = await waitDrained<{ phase: string; sweeper: { small_steps_for_touches: number } }>(sp, 30_000);
    expect(st.sweeper.small_steps_for_touches).toBe(0);
  });

  it('an INFO during the sweep reads the counts a few times, not once per sweeper step', async () => {
    // INFO's keyspace section (as DBSIZE) reads the source's counts before and after the
    // target's and tries again, up to 100 times, while they change. The sweeper gives way while
    // it reads: with steps back to back nearly every attempt saw a change, and ioredis's ready
    // check (an INFO) took seconds.
    const N = 100_000;
    await seedStrings(ctx.source.client(), 0, N);
    const src = ctx.source.client();
    const tgt = ctx.target.client();
    const sp = await sweepProxy(ctx);
    await waitFor(async () => Number(await src.dbsize()) < N - 20_000, 'the sweep in its stride');
    // Each attempt sends the client's INFO to the target once; the sweeper sends it none.
    const infos = async () => Number(/cmdstat_info:calls=(\d+)/.exec(await tgt.info('commandstats'))?.[1] ?? 0);
    const before = await infos();
    const c = sp.proxy.client();
    expect(await c.info()).toMatch(/^db0:keys=\d+/m);
    const attempts = (await infos()) - before - 1; // one more: our own read of the counter
    const left = Number(await src.dbsize());
    // Without giving way: 40-50 attempts, the whole rest of the sweep. Giving way: 1-5.
    expect(attempts, 'attempts of one INFO').toBeLessThanOrEqual(25);
    expect(left, 'the sweep ended before the INFO: the test says nothing').toBeGreaterThan(0);
    c.disconnect();
    await waitDrained(sp, 60_000);
  });

  it('keys the old server expires between steps are not taken for touches', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 20_000);
    // 20,000 more that expire while the (rate-capped) sweep runs: the server deletes them between
    // steps, and the db shrinks as if clients had moved them.
    for (let i = 0; i < 20_000; i += 1_000) {
      const p = s.pipeline();
      for (let j = i; j < i + 1_000; j++) p.set(`e:${j}`, 'x', 'PX', 300 + ((j * 7919) % 4_000));
      await p.exec();
    }
    const sp = await sweepProxy(ctx, ['--sweep-rate', '8000']);
    const st = await waitDrained<{ phase: string; sweeper: { small_steps_for_touches: number } }>(sp, 40_000);
    expect(await s.info('stats')).toMatch(/expired_keys:[1-9]/);
    expect(st.sweeper.small_steps_for_touches).toBe(0);
    await expectStrings(ctx.target.client(), 0, 20_000);
  });
});
