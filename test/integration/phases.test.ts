/**
 * Phases (hold, migrate, drained, reverse) and the fenced fleet-wide switch (src/phase/phase.ts),
 * with several rehome processes on one pair, under a counter workload: no key ends up in both
 * places and no acknowledged write is lost across switches.
 */
import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { expectStrings, fetchStatus, noKeyInBoth, seedStrings, useAdminProxies, type AdminProxy } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { encodeCommand } from '../helpers/resp.js';
import { sleep, waitFor } from '../helpers/util.js';
import { checkCounters, seedCounters, startCounterWorkload } from '../helpers/workload.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

const PHASE_KEY = '__rehome:phase';

interface Status {
  phase: string;
  epoch: number | null;
  phases: {
    shared: { phase: string; epoch: number };
    processes: Array<{ id: string; phase: string; epoch: number; clients: number }>;
  } | null;
  keys: { remaining_total: number; initial_in_source: number };
  clients: number;
}

type Json = Record<string, any>;

async function waitPhase(ap: AdminProxy, phase: string, epoch?: number, timeoutMs = 20_000): Promise<Status> {
  try {
    return await waitFor(
      async () => {
        const st = await fetchStatus<Status>(ap.admin);
        return st.phase === phase && (epoch === undefined || st.epoch === epoch) ? st : null;
      },
      `phase ${phase}${epoch === undefined ? '' : ` at epoch ${epoch}`}`,
      timeoutMs,
      100,
    );
  } catch (e) {
    const st = await fetchStatus<Status>(ap.admin).catch(() => null);
    throw new Error(`${(e as Error).message}\nlast status: ${JSON.stringify(st)}\nproxy stderr:\n${ap.proxy.stderr.slice(-3000)}`);
  }
}

async function phaseCli(ap: AdminProxy, to: string) {
  return runCli(['phase', to, '--admin', ap.admin]);
}

/** Keys per db of a server, counted directly, rehome's phase key left out. */
async function dataKeys(c: Redis, dbs = [0, 1]): Promise<number> {
  let n = 0;
  for (const db of dbs) {
    await c.select(db);
    n += (await c.dbsize()) - (await c.exists(PHASE_KEY));
  }
  await c.select(0);
  return n;
}

describe('hold', () => {
  it('forwards everything to the old server, never touches the new one, and hides the phase key', async () => {
    const old = ctx.source.client();
    await seedStrings(old, 0, 20);
    await seedStrings(old, 1, 5);
    const ap = await startAdminProxy(ctx, ['--phase', 'hold']);
    const c = ap.proxy.client();
    expect(await old.hget(PHASE_KEY, 'phase')).toBe('hold');
    await c.set('written', 'in-hold');
    expect(await old.get('written')).toBe('in-hold');
    await sleep(1_200); // a sweeper would have run by now
    const neu = ctx.target.client();
    expect(await dataKeys(neu, [0, 1])).toBe(0);

    // The phase key is hidden from every keyspace-wide command and refused by name.
    expect(await c.dbsize()).toBe(21);
    expect((await c.keys('*')).sort()).toEqual((await old.keys('*')).filter((k) => k !== PHASE_KEY).sort());
    const seen = new Set<string>();
    let cursor = '0';
    do {
      const [next, keys] = await c.scan(cursor, 'COUNT', 7);
      keys.forEach((k) => seen.add(k));
      cursor = next;
    } while (cursor !== '0');
    expect(seen.size).toBe(21);
    expect(seen.has(PHASE_KEY)).toBe(false);
    expect(await c.info('keyspace')).toMatch(/db0:keys=21,/);
    await expect(c.hgetall(PHASE_KEY)).rejects.toThrow(/reserved/);
    await expect(c.del(PHASE_KEY)).rejects.toThrow(/reserved/);

    // Inside MULTI too (nothing moves in hold, so they are not refused there).
    const tx = await c.multi().dbsize().exists('nope').exec();
    expect(tx).toEqual([[null, 21], [null, 0]]);

    // SWAPDB and FLUSHDB through rehome keep the phase key in db 0 of the old server.
    await c.swapdb(0, 1);
    expect(await c.dbsize()).toBe(5);
    expect(await old.hget(PHASE_KEY, 'phase')).toBe('hold');
    await old.select(1);
    expect(await old.exists(PHASE_KEY)).toBe(0);
    await old.select(0);
    await c.swapdb(0, 1);
    expect(await c.dbsize()).toBe(21);
    await c.flushdb();
    expect(await c.dbsize()).toBe(0);
    expect(await c.randomkey()).toBeNull();
    expect(await old.hget(PHASE_KEY, 'phase')).toBe('hold');
    await c.set('only', '1');
    for (let i = 0; i < 20; i++) expect(await c.randomkey()).toBe('only');
    await c.flushall();
    expect(await old.hget(PHASE_KEY, 'epoch')).toBe('1');

    const st = await fetchStatus<Status>(ap.admin);
    expect(st.phase).toBe('hold');
    expect(st.epoch).toBe(1);
    const metrics = await (await fetch(`http://${ap.admin}/metrics`)).text();
    expect(metrics).toMatch(/rehome_phase\{phase="hold",epoch="1"\} 1/);
    c.disconnect();
    old.disconnect();
    neu.disconnect();
  });

  it('puts back a phase key deleted behind its back (FLUSHALL straight on the old server)', async () => {
    const ap = await startAdminProxy(ctx, ['--phase', 'hold']);
    const old = ctx.source.client();
    await old.flushall();
    await waitFor(async () => ((await old.hget(PHASE_KEY, 'phase')) === 'hold' ? true : null), 'phase key restored', 10_000, 100);
    expect(await old.hget(PHASE_KEY, 'epoch')).toBe('1');
    const c = ap.proxy.client();
    await c.set('after', '1');
    expect(await old.get('after')).toBe('1');
    c.disconnect();
    old.disconnect();
  });

  it("keeps the connection's fenced name while the client names itself", async () => {
    const ap = await startAdminProxy(ctx, ['--phase', 'hold']);
    const c = ap.proxy.client();
    expect(await c.client('GETNAME')).toBeNull();
    expect(await c.client('SETNAME', 'billing')).toBe('OK');
    expect(await c.client('GETNAME')).toBe('billing');
    await expect(c.client('SETNAME', 'has space')).rejects.toThrow(/Client names cannot contain spaces/);
    expect(await c.client('GETNAME')).toBe('billing');
    const list = (await c.client('LIST')) as string;
    expect(list).toMatch(/name=rehome-e1-client\.billing /);
    // RESET clears the client's name; the connection is named for the epoch again.
    const raw = await ap.proxy.raw();
    raw.write(encodeCommand(['CLIENT', 'SETNAME', 'x']));
    raw.write(encodeCommand(['RESET']));
    raw.write(encodeCommand(['CLIENT', 'GETNAME']));
    const r = await raw.readReplies(3, 5_000);
    expect(r.map((b) => b.toString())).toEqual(['+OK\r\n', '+RESET\r\n', '$-1\r\n']);
    const direct = ctx.source.client();
    const names = ((await direct.client('LIST')) as string).match(/name=\S*/g) ?? [];
    expect(names.filter((n) => n === 'name=rehome-e1-client')).toHaveLength(1);
    raw.close();
    c.disconnect();
    direct.disconnect();
  });
});

describe('the fenced switch', () => {
  it('hold -> migrate with three processes under load: every process follows, no key in both, no acknowledged write lost', async () => {
    const old = ctx.source.client();
    const bases = await seedCounters(old, { counters: 2_000, seed: 7 });
    await seedStrings(old, 1, 3_000);
    const aps = await Promise.all([0, 1, 2].map(() => startAdminProxy(ctx, ['--phase', 'hold'])));
    const w = startCounterWorkload({ urls: aps.map((a) => a.proxy.url), clients: 9, counters: 2_000, seed: 11, bases });
    await sleep(1_000);
    const r = await phaseCli(aps[1]!, 'migrate');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const sw = JSON.parse(r.stdout) as { from: string; to: string; epoch: number; killed: number };
    expect(sw).toMatchObject({ from: 'hold', to: 'migrate', epoch: 2 });
    // The other processes closed their connections of epoch 1 themselves once their commands in
    // flight had finished (the gentle switch); the fence kills what a late one left (sw.killed).
    for (const ap of aps) await waitPhase(ap, 'drained', 2, 30_000);
    await sleep(500);
    const res = await w.stop();
    expect(res.totals.acked).toBeGreaterThan(500);
    const neu = ctx.target.client();
    const summary = await checkCounters(res, async (k) => Number(await neu.get(k)));
    expect(summary.acked).toBe(res.totals.acked);
    await expectStrings(neu, 1, 3_000);
    await noKeyInBoth(ctx, aps);
    expect(await dataKeys(old, [0, 1])).toBe(0);
    // Every process reports its view; all agree on the shared phase. Each process reads the
    // others' records on its own clock (about once a second), so wait for every view.
    const views = await Promise.all(aps.map((ap) => waitFor(async () => {
      const s = await fetchStatus<Status>(ap.admin);
      return s.phases!.processes.length === 3 && s.phases!.processes.every((p) => p.phase === 'drained' && p.epoch === 2) ? s : null;
    }, 'three processes on drained at epoch 2', 10_000, 200)));
    const st = views[0]!;
    expect(st.phases!.shared).toMatchObject({ phase: 'drained', epoch: 2 });
    const text = await runCli(['status', '--admin', aps[2]!.admin]);
    expect(text.stdout).toMatch(/^phase\s+drained \(epoch 2\)/m);
    expect(text.stdout).toMatch(/processes\s+3 seen, 3 on drained \(epoch 2\)/);
    old.disconnect();
    neu.disconnect();
  });

  it('a command still in flight when the switch drain ends gets an error; the client reconnects to the new phase', async () => {
    const ap = await startAdminProxy(ctx, ['--phase', 'hold']);
    const other = await startAdminProxy(ctx, ['--phase', 'hold']);
    const raw = await other.proxy.raw();
    // Blocked for longer than --switch-drain-ms (1 s): the gentle switch cannot carry it.
    raw.write(encodeCommand(['BLPOP', 'queue', '60']));
    await sleep(300);
    const r = await phaseCli(ap, 'migrate');
    expect(r.code, r.stderr).toBe(0);
    const [reply] = await raw.readReplies(1, 5_000).catch(() => [Buffer.from('closed')]);
    expect(reply!.toString()).toMatch(/^-TRYAGAIN rehome: .*(phase changed|connection closed)|^closed$/);
    await waitFor(async () => raw.closed || null, 'old-phase connection closed', 5_000, 50);
    await waitPhase(other, 'drained', 2);
    const c = other.proxy.client();
    await c.rpush('queue', 'a');
    expect(await c.blpop('queue', 1)).toEqual(['queue', 'a']);
    const neu = ctx.target.client();
    expect(await neu.exists('queue')).toBe(0);
    await c.set('after', '1');
    expect(await neu.get('after')).toBe('1');
    c.disconnect();
    neu.disconnect();
  });

  it('reverse after a partial migration brings every key back to the old server; migrate again moves them', async () => {
    const old = ctx.source.client();
    await seedStrings(old, 0, 2_000);
    const bases = await seedCounters(old, { counters: 500, seed: 3, db: 1 });
    const aps = await Promise.all([0, 1].map(() => startAdminProxy(ctx, ['--phase', 'migrate', '--sweep-rate', '800'])));
    const w = startCounterWorkload({ urls: aps.map((a) => a.proxy.url), clients: 6, counters: 500, db: 1, seed: 5, bases });
    const neu = ctx.target.client();
    await waitFor(async () => ((await dataKeys(neu)) > 800 ? true : null), 'a partial migration', 15_000, 100);
    expect(await dataKeys(old)).toBeGreaterThan(500);

    let r = await phaseCli(aps[0]!, 'reverse');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    // reverse ends by itself in hold once the new server is empty.
    for (const ap of aps) await waitPhase(ap, 'hold', 2, 40_000);
    expect(await dataKeys(neu)).toBe(0);
    await expectStrings(old, 0, 2_000);
    await noKeyInBoth(ctx, aps);

    r = await phaseCli(aps[1]!, 'migrate');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    for (const ap of aps) await waitPhase(ap, 'drained', 3, 40_000);
    const res = await w.stop();
    await checkCounters(res, async (k) => {
      await neu.select(1);
      return Number(await neu.get(k));
    });
    await neu.select(0);
    await expectStrings(neu, 0, 2_000);
    expect(await dataKeys(old)).toBe(0);
    await noKeyInBoth(ctx, aps);
    old.disconnect();
    neu.disconnect();
  }, 120_000);

  it('after a rollback: the log says rollback complete, status shows hold idle and the old server\'s keys', async () => {
    const old = ctx.source.client();
    await seedStrings(old, 0, 1_000);
    await seedStrings(old, 1, 20);
    const ap = await startAdminProxy(ctx, ['--phase', 'migrate', '--sweep-rate', '300']);
    const neu = ctx.target.client();
    await waitFor(async () => ((await dataKeys(neu)) > 100 ? true : null), 'a partial migration', 15_000, 100);
    const r = await phaseCli(ap, 'reverse');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    await waitPhase(ap, 'hold', 2, 40_000);
    await waitFor(async () => (/rollback complete/.test(ap.proxy.stderr) ? true : null), 'the rollback line', 5_000, 50);
    expect(ap.proxy.stderr).toMatch(/rollback complete: the new server holds no key in any db \(\d+ keys moved in [\d.]+ s back to the old server\); the phase becomes hold: every command goes to the old server/);
    expect(ap.proxy.stderr).not.toMatch(/migration complete/);
    expect(ap.proxy.stderr).not.toMatch(/straight to the target/);
    const st = await waitFor(async () => {
      const s = await fetchStatus<Json>(ap.admin);
      return s.keys.waiting_for_migrate?.total === 1_020 ? s : null;
    }, 'the old server\'s keys in status', 5_000, 100);
    expect(st.keys.waiting_for_migrate.per_db).toEqual({ 0: 1_000, 1: 20 });
    expect(st.sweeper.state).toBe('idle');
    const h = await runCli(['status', '--admin', ap.admin]);
    expect(h.code, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/^remaining\s+nothing moves in hold; the old server holds 1020 keys \(db0=1000 db1=20\): what rehome phase migrate would move$/m);
    expect(h.stdout).toMatch(/^sweeper\s+not sweeping \(hold\); limit 300 keys\/s \(fleet setting\)$/m);
    expect(h.stdout).toMatch(/^own sweeper\s+idle \(nothing moves in hold; rehome phase migrate starts it\)$/m);
    expect(h.stdout).not.toMatch(/disabled/);
    old.disconnect();
    neu.disconnect();
  }, 60_000);

  it('a process started in hold: status shows the old server\'s keys and an idle sweeper', async () => {
    const old = ctx.source.client();
    await seedStrings(old, 0, 30);
    await seedStrings(old, 2, 5);
    const ap = await startAdminProxy(ctx, ['--phase', 'hold']);
    const st = await fetchStatus<Json>(ap.admin);
    expect(st.phase).toBe('hold');
    expect(st.keys.waiting_for_migrate).toEqual({ total: 35, per_db: { 0: 30, 2: 5 } });
    expect(st.sweeper).toMatchObject({ state: 'idle' });
    // Keys written through rehome in hold land on the old server: counted too.
    const c = ap.proxy.client();
    await c.set('more', '1');
    await waitFor(async () => ((await fetchStatus<Json>(ap.admin)).keys.waiting_for_migrate.total === 36 ? true : null), 'the new key counted', 5_000, 100);
    c.disconnect();
    old.disconnect();
  });

  it('refuses migrate when a key is already in both servers (the pre-flight checks of rehome plan)', async () => {
    const old = ctx.source.client();
    await old.set('dup', 'old-copy');
    const ap = await startAdminProxy(ctx, ['--phase', 'hold']);
    const neu = ctx.target.client();
    await neu.set('dup', 'new-copy');
    const r = await phaseCli(ap, 'migrate');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/cannot switch to migrate: pre-flight check failed: .*1 key/);
    expect((await fetchStatus<Status>(ap.admin)).phase).toBe('hold');
    expect(await old.get('dup')).toBe('old-copy');
    old.disconnect();
    neu.disconnect();
  });

  it('migrate from drained sweeps keys written to the old server directly since', async () => {
    const ap = await startAdminProxy(ctx, ['--phase', 'migrate']);
    await waitPhase(ap, 'drained', 1);
    const old = ctx.source.client();
    await seedStrings(old, 0, 50, 'late:');
    // verify names the step that empties the old server: in drained nothing else does.
    const v = await runCli(['verify', '--source', ctx.source.url, '--target', ctx.target.url]);
    expect(v.code, v.stderr).toBe(1);
    expect(v.stdout).toMatch(/source 127\.0\.0\.1:\d+ still holds 50 keys/);
    expect(v.stdout).toMatch(/^not safe to cut over yet: rehome is in phase drained, which moves no key out of the source: run rehome phase migrate/m);
    expect(v.stdout).not.toMatch(/keep rehome running/);
    const r = await phaseCli(ap, 'migrate');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ from: 'drained', to: 'migrate', epoch: 2 });
    await waitPhase(ap, 'drained', 2);
    const neu = ctx.target.client();
    await expectStrings(neu, 0, 50, 'late:');
    expect(await dataKeys(old)).toBe(0);
    old.disconnect();
    neu.disconnect();
  });

  it('refuses hold while the new server holds keys, bad phases, and phases on a proxy started without them', async () => {
    const ap = await startAdminProxy(ctx, ['--phase', 'migrate']);
    const c = ap.proxy.client();
    await c.set('moved', '1');
    let r = await phaseCli(ap, 'hold');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/new server holds 1 keys/);
    r = await phaseCli(ap, 'fencing');
    expect(r.code).toBe(2);
    r = await runCli(['phase', 'migrate']);
    expect(r.code).toBe(2);
    c.disconnect();
    await ap.proxy.stop();
    const old = ctx.source.client();
    await old.del(PHASE_KEY);
    const legacy = await startAdminProxy(ctx, []);
    r = await phaseCli(legacy, 'hold');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/start every rehome process with --phase/);
    expect((await fetchStatus<Status>(legacy.admin)).phases).toBeNull();
    old.disconnect();
  });
});
