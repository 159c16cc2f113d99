/**
 * The fleet as one (issue 20, items 2 and 3): sweeper settings stored with the phase on the old
 * server, so that a rate or a pause set on any process holds for whichever process sweeps, across
 * phase switches, lease takeovers and restarts; and `rehome status` on any process (a standby
 * included) showing the keys left read from the server itself, with the sweeping process's rate
 * and ETA.
 *
 * Two or three rehome processes with phases on one pair of real servers. Rate caps are checked by
 * counting the keys that leave a server over a few seconds, with a generous margin: the point is
 * that the cap holds (an uncapped sweep here moves tens of thousands of keys a second), not how
 * closely it is met.
 */
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { expectStrings, fetchStatus, noKeyInBoth, seedStrings, useAdminProxies, type AdminProxy } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { sleep, waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });
const startAdmin = useAdminProxies();

const PHASE_KEY = '__rehome:phase';

type Json = Record<string, any>;

/** Keys of a server over every db, rehome's phase key left out. */
async function keysIn(c: Redis): Promise<number> {
  const text = await c.info('keyspace');
  let n = 0;
  for (const m of text.matchAll(/^db\d+:keys=(\d+)/gm)) n += Number(m[1]);
  return n - (await c.exists(PHASE_KEY));
}

/** Keys per second leaving a server over `ms`. */
async function outflow(c: Redis, ms: number): Promise<number> {
  const n0 = await keysIn(c);
  const t0 = performance.now();
  await sleep(ms);
  const n1 = await keysIn(c);
  return ((n0 - n1) * 1000) / (performance.now() - t0);
}

/** Fails if any key leaves the server over `ms`. */
async function expectStill(c: Redis, ms: number, what: string): Promise<void> {
  const n0 = await keysIn(c);
  await sleep(ms);
  expect(await keysIn(c), what).toBe(n0);
}

async function waitStatus(ap: AdminProxy, ok: (st: Json) => boolean, what: string, timeoutMs = 20_000): Promise<Json> {
  try {
    return await waitFor(async () => {
      const st = await fetchStatus<Json>(ap.admin);
      return ok(st) ? st : null;
    }, what, timeoutMs, 100);
  } catch (e) {
    const st = await fetchStatus<Json>(ap.admin).catch(() => null);
    throw new Error(`${(e as Error).message}\nlast status: ${JSON.stringify(st)}\nproxy stderr:\n${ap.proxy.stderr.slice(-3000)}`);
  }
}

const onPhase = (phase: string) => (st: Json) => st.phase === phase;

async function sweeperCli(ap: AdminProxy, ...args: string[]): Promise<Json> {
  const r = await runCli(['sweeper', ...args, '--admin', ap.admin]);
  expect(r.code, r.stderr + r.stdout).toBe(0);
  expect(r.stdout).not.toMatch(/the sweeper is disabled/);
  return JSON.parse(r.stdout) as Json;
}

async function phaseCli(ap: AdminProxy, to: string): Promise<void> {
  const r = await runCli(['phase', to, '--admin', ap.admin]);
  expect(r.code, r.stderr + r.stdout).toBe(0);
}

/** Of two processes, the one whose sweeper sweeps and the one on standby. */
async function roles(a: AdminProxy, b: AdminProxy): Promise<{ sweeping: AdminProxy; standby: AdminProxy; ids: Map<AdminProxy, string> }> {
  return waitFor(async () => {
    const [sa, sb] = await Promise.all([fetchStatus<Json>(a.admin), fetchStatus<Json>(b.admin)]);
    const ids = new Map([[a, sa.process_id as string], [b, sb.process_id as string]]);
    if (sa.sweeper.state === 'sweeping' && sb.sweeper.state === 'standby') return { sweeping: a, standby: b, ids };
    if (sb.sweeper.state === 'sweeping' && sa.sweeper.state === 'standby') return { sweeping: b, standby: a, ids };
    return null;
  }, 'one process sweeping, the other on standby', 15_000, 100);
}

describe('sweeper settings are the fleet\'s', () => {
  it('a rate set on one process caps the sweep through the switches hold -> migrate -> reverse -> migrate', async () => {
    const old = ctx.source.client();
    const neu = ctx.target.client();
    await seedStrings(old, 0, 5_000);
    await seedStrings(old, 1, 2_000);
    // No --sweep-rate: the runtimes built at each switch would sweep unthrottled from the flags.
    const a = await startAdmin(ctx, ['--phase', 'hold']);
    const b = await startAdmin(ctx, ['--phase', 'hold']);
    const set = await sweeperCli(b, 'rate', '400');
    expect(set.fleet).toMatchObject({ rate_limit: 400, paused: false });
    expect(set.note).toMatch(/stored for the fleet/);
    expect(await old.hget(PHASE_KEY, 'sweep:rate')).toBe('400');
    for (const p of [a, b]) await waitStatus(p, (st) => st.fleet.sweeper.rate_limit === 400, 'the fleet rate on every process');
    // At most 2.5 times the cap: two sweepers may overlap for a moment after a switch.
    const cap = 400 * 2.5;

    await phaseCli(b, 'migrate');
    for (const p of [a, b]) await waitStatus(p, onPhase('migrate'), 'migrate on every process');
    await sleep(500);
    const r1 = await outflow(old, 2_000);
    expect(r1, 'keys/s out of the old server in migrate').toBeGreaterThan(0);
    expect(r1, 'keys/s out of the old server in migrate').toBeLessThanOrEqual(cap);

    // Keys for the reverse sweep to move back for a while (more than the capped sweep moved so
    // far): new keys written through rehome in migrate land on the new server.
    const w = a.proxy.client();
    await seedStrings(w, 0, 3_000, 'w:');
    w.disconnect();
    expect(await keysIn(neu)).toBeGreaterThanOrEqual(3_000);
    await phaseCli(a, 'reverse');
    for (const p of [a, b]) await waitStatus(p, onPhase('reverse'), 'reverse on every process');
    await sleep(500);
    const r2 = await outflow(neu, 2_000);
    expect(r2, 'keys/s out of the new server in reverse (the rate outlives the switch)').toBeGreaterThan(0);
    expect(r2, 'keys/s out of the new server in reverse (the rate outlives the switch)').toBeLessThanOrEqual(cap);
    for (const p of [a, b]) expect((await fetchStatus<Json>(p.admin)).fleet.sweeper.rate_limit).toBe(400);

    await phaseCli(b, 'migrate');
    for (const p of [a, b]) await waitStatus(p, onPhase('migrate'), 'migrate again on every process');
    await sleep(500);
    const r3 = await outflow(old, 2_000);
    expect(r3, 'keys/s out of the old server after the second switch').toBeGreaterThan(0);
    expect(r3, 'keys/s out of the old server after the second switch').toBeLessThanOrEqual(cap);

    // Lifted on one process: the fleet drains.
    expect((await sweeperCli(a, 'rate', '0')).fleet.rate_limit).toBeNull();
    for (const p of [a, b]) await waitStatus(p, onPhase('drained'), 'drained', 30_000);
    await expectStrings(ctx.target.client(), 0, 5_000);
    await expectStrings(ctx.target.client(), 1, 2_000);
    await expectStrings(ctx.target.client(), 0, 3_000, 'w:');
    await noKeyInBoth(ctx, [a, b]);
    old.disconnect();
    neu.disconnect();
  }, 120_000);

  it('a pause holds through a switch, the sweeping process killed (lease takeover) and a new process', async () => {
    const old = ctx.source.client();
    const neu = ctx.target.client();
    await seedStrings(old, 0, 6_000);
    // Processes: the sweeping one is killed below.
    const a = await startAdmin(ctx, ['--phase', 'migrate', '--sweep-rate', '300'], true, true);
    const b = await startAdmin(ctx, ['--phase', 'migrate', '--sweep-rate', '300'], true, true);
    const { sweeping, standby } = await roles(a, b);
    // Paused on the process that does not sweep.
    const p = await sweeperCli(standby, 'pause');
    expect(p.fleet).toMatchObject({ paused: true, pause_reason: 'paused by operator' });
    for (const x of [a, b]) await waitStatus(x, (st) => st.sweeper.state === 'paused', 'every sweeper paused');
    await sleep(500); // a batch in flight may still finish
    await expectStill(old, 1_000, 'keys left the old server while paused');

    await phaseCli(sweeping, 'reverse');
    for (const x of [a, b]) await waitStatus(x, (st) => st.phase === 'reverse' && st.sweeper.state === 'paused', 'reverse, still paused');
    await expectStill(neu, 1_000, 'keys left the new server in reverse while paused');
    await phaseCli(standby, 'migrate');
    for (const x of [a, b]) await waitStatus(x, (st) => st.phase === 'migrate' && st.sweeper.state === 'paused', 'migrate, still paused');
    expect((await fetchStatus<Json>(a.admin)).fleet.sweeper).toMatchObject({ state: 'paused', paused: true });

    // The process that held the lease dies: the other one may take the lease, but stays paused.
    await sweeping.proxy.stop('SIGKILL');
    await sleep(1_000);
    await expectStill(old, 2_000, 'keys left the old server after the sweeping process died');
    expect((await fetchStatus<Json>(standby.admin)).sweeper.state).toBe('paused');

    // A process started now joins paused.
    const c = await startAdmin(ctx, ['--phase', 'migrate', '--sweep-rate', '300']);
    // Logged with the runtime's lines, just after the listening line the start waited for.
    await waitFor(() => /the fleet's sweeper is paused/.test(c.proxy.stdout + c.proxy.stderr), 'the paused log line');
    expect(c.proxy.stdout + c.proxy.stderr).toMatch(/the fleet's sweeper is paused \(paused by operator\)/);
    const sc = await waitStatus(c, (st) => st.sweeper.state === 'paused', 'the new process paused');
    expect(sc.sweeper.pause_reason).toBe('paused by operator');
    await expectStill(old, 1_000, 'keys left the old server once a third process joined');

    // Resumed on the newcomer: the fleet drains.
    expect((await sweeperCli(c, 'resume')).fleet.paused).toBe(false);
    await sweeperCli(c, 'rate', '0');
    for (const x of [standby, c]) await waitStatus(x, onPhase('drained'), 'drained', 30_000);
    await expectStrings(ctx.target.client(), 0, 6_000);
    await noKeyInBoth(ctx, [standby, c]);
    old.disconnect();
    neu.disconnect();
  }, 120_000);

  it('a process started in hold, and one with --no-sweep, take sweeper settings for the fleet', async () => {
    const old = ctx.source.client();
    await seedStrings(old, 0, 3_000);
    const a = await startAdmin(ctx, ['--phase', 'hold']);
    const r = await sweeperCli(a, 'rate', '250');
    expect(r.fleet.rate_limit).toBe(250);
    expect(r.note).toMatch(/stored for the fleet: this process runs no sweeper now \(phase hold: nothing moves\)/);
    const st = await waitStatus(a, (s) => s.fleet.remaining?.total === 3_000, 'the old server\'s keys in the fleet section');
    expect(st.fleet.remaining).toMatchObject({ server: 'old', per_db: { 0: 3_000 }, error: null });
    expect(st.fleet.sweeper).toMatchObject({ state: 'not sweeping (hold)', rate_limit: 250, paused: false });
    expect(st.fleet.rate_keys_per_s).toBeNull();
    const h = await runCli(['status', '--admin', a.admin]);
    expect(h.code, h.stderr).toBe(0);
    expect(h.stdout).toMatch(/^remaining\s+nothing moves in hold; the old server holds 3000 keys \(db0=3000\): what rehome phase migrate would move$/m);
    expect(h.stdout).toMatch(/^sweeper\s+not sweeping \(hold\); limit 250 keys\/s \(fleet setting, set by \S+\)$/m);
    expect(h.stdout).not.toMatch(/disabled/);

    // --no-sweep: it never sweeps, but pauses the fleet's sweeper all the same.
    const b = await startAdmin(ctx, ['--phase', 'hold'], false);
    const pr = await fetch(`http://${b.admin}/sweeper/pause`, { method: 'POST' });
    const pb = (await pr.json()) as Json;
    expect(pr.status, JSON.stringify(pb)).toBe(200);
    expect(pb.note).toMatch(/stored for the fleet: this process runs no sweeper now \(--no-sweep\)/);
    expect(pb.fleet).toMatchObject({ paused: true, rate_limit: 250 });

    await phaseCli(b, 'migrate');
    const sa = await waitStatus(a, (s) => s.phase === 'migrate' && s.sweeper.state === 'paused', 'migrate with the sweeper paused');
    expect(sa.sweeper.rate_limit).toBe(250);
    await sleep(500);
    await expectStill(old, 1_000, 'keys left the old server while the fleet is paused');

    await sweeperCli(b, 'resume');
    await waitStatus(a, (s) => s.sweeper.state === 'sweeping', 'the hold-started process sweeping');
    await sleep(500);
    const rate = await outflow(old, 2_000);
    expect(rate, 'keys/s at the rate set in hold').toBeGreaterThan(0);
    expect(rate, 'keys/s at the rate set in hold').toBeLessThanOrEqual(250 * 2.5);
    await sweeperCli(b, 'rate', '0');
    await waitStatus(a, onPhase('drained'), 'drained', 30_000);
    await expectStrings(ctx.target.client(), 0, 3_000);
    await noKeyInBoth(ctx, [a, b]);
    old.disconnect();
  }, 90_000);
});

describe('fleet-wide status', () => {
  it('a standby shows the keys left in the old server, the sweeper\'s rate and ETA, stale when it stops reporting, none once drained', async () => {
    const old = ctx.source.client();
    // About 30 s of sweep at 300 keys/s: the checks below run while it sweeps, even on a busy machine.
    await seedStrings(old, 0, 8_000);
    await seedStrings(old, 2, 1_000);
    // Processes: the sweeping one is stopped (SIGSTOP) below.
    const a = await startAdmin(ctx, ['--phase', 'migrate', '--sweep-rate', '300'], true, true);
    const b = await startAdmin(ctx, ['--phase', 'migrate', '--sweep-rate', '300'], true, true);
    const { sweeping, standby, ids } = await roles(a, b);
    const sweeperId = ids.get(sweeping)!;

    const st = await waitStatus(
      standby,
      (s) => s.fleet.rate_reported?.by === sweeperId && s.fleet.rate_reported.stale === false && s.fleet.rate_keys_per_s > 0,
      'the sweeper\'s rate on the standby',
    );
    expect(st.sweeper.state).toBe('standby');
    expect(st.fleet.sweeper).toMatchObject({ state: 'sweeping', on: sweeperId, rate_limit: 300 });
    expect(st.fleet.rate_keys_per_s).toBeLessThanOrEqual(300 * 2.5);
    expect(st.fleet.eta_s).toBe(Math.ceil(st.fleet.remaining.total / st.fleet.rate_keys_per_s));
    // The standby's own figures: it moves nothing, so its own rate says nothing about the drain.
    expect(st.rate_keys_per_s).toBe(0);

    // Remaining is read from the old server: between two direct counts around the read.
    const before = await keysIn(old);
    await sleep(1_200);
    const fresh = await fetchStatus<Json>(standby.admin);
    const after = await keysIn(old);
    expect(fresh.fleet.remaining.server).toBe('old');
    expect(fresh.fleet.remaining.total).toBeLessThanOrEqual(before);
    expect(fresh.fleet.remaining.total).toBeGreaterThanOrEqual(after);
    expect(Object.keys(fresh.fleet.remaining.per_db).every((db) => db === '0' || db === '2')).toBe(true);

    const h = await runCli(['status', '--admin', standby.admin]);
    expect(h.code, h.stderr).toBe(0);
    const id = sweeperId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    expect(h.stdout).toMatch(/^remaining\s+\d+ in the old server {2}\(db0=\d+( db2=\d+)?\)$/m);
    expect(h.stdout).toMatch(new RegExp(`^rate\\s+\\d+ keys/s, ETA \\S+ \\(reported by ${id} [\\d.]+ s ago\\)$`, 'm'));
    expect(h.stdout).toMatch(new RegExp(`^sweeper\\s+sweeping on ${id}; limit 300 keys/s`, 'm'));
    expect(h.stdout).toMatch(/^own sweeper\s+standby/m);

    // The sweeping process stops answering (SIGSTOP): its rate is shown as stale, no ETA.
    sweeping.proxy.proc.kill('SIGSTOP');
    try {
      const stale = await waitStatus(standby, (s) => s.fleet.rate_reported?.stale === true, 'a stale rate', 9_000);
      expect(stale.fleet.eta_s).toBeNull();
      expect(stale.fleet.sweeper.state).toBe('not reporting (stale)');
      const hs = await runCli(['status', '--admin', standby.admin]);
      expect(hs.stdout).toMatch(new RegExp(`^rate\\s+\\d+ keys/s as of [\\d.]+ s ago \\(stale: ${id} stopped reporting\\), ETA unknown$`, 'm'));
    } finally {
      sweeping.proxy.proc.kill('SIGKILL');
    }
    // Its lease went with its connections: the standby takes over and reports.
    await waitStatus(standby, (s) => s.fleet.rate_reported?.by === ids.get(standby) && s.fleet.rate_reported.stale === false, 'the new sweeper\'s report');

    await sweeperCli(standby, 'rate', '0');
    const d = await waitStatus(standby, onPhase('drained'), 'drained', 30_000);
    const fd = await waitStatus(standby, (s) => s.fleet.remaining?.total === 0, 'nothing left', 5_000);
    expect(fd.fleet).toMatchObject({ phase: 'drained', rate_keys_per_s: 0, eta_s: 0 });
    expect(fd.fleet.sweeper.state).toBe('drained');
    expect(d.phase).toBe('drained');
    const hd = await runCli(['status', '--admin', standby.admin]);
    expect(hd.stdout).toMatch(/^rate\s+0 keys\/s, ETA 0s \(drained\)$/m);
    expect(hd.stdout).toMatch(/^remaining\s+0 in the old server$/m);
    await expectStrings(ctx.target.client(), 0, 8_000);
    await expectStrings(ctx.target.client(), 2, 1_000);
    await noKeyInBoth(ctx, [standby]);
    old.disconnect();
  }, 90_000);
});

describe('a source restart pauses the fleet\'s sweeper', () => {
  const restartable = usePair({ autoProxy: false, source: { args: ['--appendonly', 'yes', '--appendfsync', 'always'] } });

  it('every process pauses, whichever saw it; one resume on any process resumes them all', async () => {
    let old = restartable.source.client();
    await seedStrings(old, 0, 3_000);
    const a = await startAdmin(restartable, ['--phase', 'migrate', '--sweep-rate', '200']);
    const b = await startAdmin(restartable, ['--phase', 'migrate', '--sweep-rate', '200']);
    await waitFor(async () => ((await keysIn(old)) < 2_900 ? true : null), 'the sweeper to move some keys', 15_000, 50);
    await restartable.source.restart({ keepData: true });
    old = restartable.source.client();
    expect(await old.hget(PHASE_KEY, 'phase'), 'the phase kept over the restart').toBe('migrate');
    for (const x of [a, b]) {
      await waitStatus(x, (st) => st.sweeper.state === 'paused' && /source restarted/.test(st.fleet.sweeper.pause_reason ?? ''), 'every sweeper paused for the restart');
    }
    expect(await old.hget(PHASE_KEY, 'sweep:paused')).toMatch(/^source restarted/);
    await sleep(500);
    await expectStill(old, 1_000, 'keys left the old server while the fleet is paused for the restart');

    const r = await sweeperCli(b, 'resume');
    expect(r.fleet.paused).toBe(false);
    await sweeperCli(b, 'rate', '0');
    for (const x of [a, b]) await waitStatus(x, onPhase('drained'), 'drained', 30_000);
    await expectStrings(restartable.target.client(), 0, 3_000);
    await noKeyInBoth(restartable, [a, b]);
    old.disconnect();
  }, 90_000);
});
