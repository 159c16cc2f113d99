/**
 * A MIGRATE each way at once holds both servers: each waits, inside its MIGRATE, for the other
 * to run the RESTORE, until MIGRATE's timeout (docs/DESIGN.md, "One direction at a time"). So
 * nothing rehome runs may MIGRATE against the direction keys are moving in:
 *   - a switch's pre-flight check outside the fence (the fleet still moves keys the other way);
 *   - a direction's move-method probe: it runs on connections named for the runtime's epoch,
 *     which the next switch kills before any process moves keys the other way;
 *   - after a canary narrowing, keys of the scope move by DUMP/RESTORE, since keys that left it
 *     come back by MIGRATE at the same time;
 *   - `rehome plan` during a migration probes only the direction keys move in.
 * Each is observed with MONITOR on the server whose MIGRATE would collide.
 */
import { describe, expect, it } from 'vitest';
import { fetchStatus, useAdminProxies, type AdminProxy } from '../helpers/admin.js';
import { phaseCli } from '../helpers/canary.js';
import { usePair } from '../helpers/fixture.js';
import { startMonitor, type Monitor } from '../helpers/monitor.js';
import { runCli } from '../helpers/proxy.js';
import { waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

async function settled(ap: AdminProxy, phase: string): Promise<void> {
  await waitFor(async () => ((await fetchStatus<{ phase: string }>(ap.admin)).phase === phase ? true : null), `phase ${phase}`, 20_000, 50);
}

/** Reads k:0 .. k:n-1 through the proxy: each moves to the new server. */
async function touch(ap: AdminProxy, n: number): Promise<void> {
  const c = ap.proxy.client();
  for (let i = 0; i < n; i++) expect(await c.get(`k:${i}`)).toBe(`v${i}`);
  c.disconnect();
}

/**
 * `n` keys on the old server and a proxy in migrate without a sweeper, through which the first
 * `touched` moved: the migration stays under way (drained, nothing would move any more).
 */
async function migrating(n: number, touched: number): Promise<{ old: ReturnType<typeof ctx.source.client>; ap: AdminProxy }> {
  const old = ctx.source.client();
  for (let i = 0; i < n; i++) await old.set(`k:${i}`, `v${i}`);
  const ap = await startAdminProxy(ctx, ['--phase', 'migrate'], false);
  await touch(ap, touched);
  return { old, ap };
}

/** Index of the switch's first step on the old server: the script that sets phase=fencing. */
function fencingAt(mon: Monitor): number {
  return mon.commands.findIndex((a) => a[0]?.toUpperCase() === 'HSET' && a[2] === 'phase' && a[3] === 'fencing');
}

function migrateIndexes(mon: Monitor): number[] {
  const out: number[] = [];
  mon.commands.forEach((a, i) => {
    if (a[0]?.toUpperCase() === 'MIGRATE') out.push(i);
  });
  return out;
}

/** The name each client address gave itself (CLIENT SETNAME as MONITOR saw it). */
function namesByAddress(mon: Monitor): Map<string, string> {
  const names = new Map<string, string>();
  mon.commands.forEach((a, i) => {
    if (a[0]?.toUpperCase() === 'CLIENT' && a[1]?.toUpperCase() === 'SETNAME') names.set(mon.senders[i]!, a[2] ?? '');
  });
  return names;
}

describe('one direction at a time', () => {
  it('a switch from reverse to migrate sends no MIGRATE to the old server before its fence', async () => {
    // No sweeper: keys move on touch only, so the reverse phase lasts (drained, it becomes hold).
    const { old, ap } = await migrating(200, 50);
    await phaseCli(ap, 'reverse');
    await settled(ap, 'reverse');
    const mon = await startMonitor(ctx.source);
    try {
      await phaseCli(ap, 'migrate');
      await mon.sync();
      const fence = fencingAt(mon);
      expect(fence, 'the switch began on the old server').toBeGreaterThanOrEqual(0);
      const early = migrateIndexes(mon).filter((i) => i < fence).map((i) => mon.commands[i]!.slice(0, 4).join(' '));
      expect(early, 'MIGRATE on the old server while the fleet still moved keys new -> old').toEqual([]);
    } finally {
      await mon.stop();
    }
    const c = ap.proxy.client();
    expect(await c.get('k:7')).toBe('v7');
    c.disconnect();
    old.disconnect();
  }, 60_000);

  it("a direction's probe MIGRATEs only on a connection named for the runtime's epoch", async () => {
    const { old, ap } = await migrating(50, 20);
    const mon = await startMonitor(ctx.target);
    try {
      await phaseCli(ap, 'reverse');
      await settled(ap, 'reverse');
      await waitFor(() => /moves new -> old \(reverse\) by/.test(ap.proxy.stderr) || null, 'the reverse runtime chose its method', 20_000, 50);
      await mon.sync();
      const names = namesByAddress(mon);
      const probes = migrateIndexes(mon)
        .filter((i) => mon.commands[i]!.some((a) => a.startsWith('__rehome:method-probe:')))
        .map((i) => ({ from: mon.senders[i]!, name: names.get(mon.senders[i]!) ?? '(no name)' }));
      expect(probes.length, 'the reverse probe ran on the new server').toBeGreaterThan(0);
      for (const p of probes) expect(p.name, `probe MIGRATE from ${p.from}`).toMatch(/^rehome-e\d+-/);
    } finally {
      await mon.stop();
    }
    old.disconnect();
  }, 60_000);

  it("a proxy starting in migrate probes on connections named for the fleet's epoch", async () => {
    const old = ctx.source.client();
    for (let i = 0; i < 20; i++) await old.set(`k:${i}`, `v${i}`);
    await startAdminProxy(ctx, ['--phase', 'migrate'], false);
    const mon = await startMonitor(ctx.source);
    try {
      await startAdminProxy(ctx, ['--phase', 'migrate'], false);
      await mon.sync();
      const names = namesByAddress(mon);
      const probes = migrateIndexes(mon)
        .filter((i) => mon.commands[i]!.some((a) => a.startsWith('__rehome:plan-probe:')))
        .map((i) => names.get(mon.senders[i]!) ?? '(no name)');
      expect(probes.length, "the second proxy's pre-flight probed MIGRATE").toBeGreaterThan(0);
      for (const name of probes) expect(name).toMatch(/^rehome-e1-plan$/);
    } finally {
      await mon.stop();
    }
    old.disconnect();
  }, 60_000);

  it('after a narrowing, keys of the scope move without MIGRATE while keys that left it come back by MIGRATE', async () => {
    const old = ctx.source.client();
    const m = old.multi();
    for (const p of ['s:', 'o:']) for (let i = 0; i < 100; i++) m.set(`${p}${i}`, `${p}v${i}`);
    await m.exec();
    // No sweeper: keys move on touch only, so both directions are under way at once below.
    const ap = await startAdminProxy(ctx, ['--phase', 'hold'], false);
    await phaseCli(ap, 'migrate', '--scope', 's:*', '--scope', 'o:*');
    const c = ap.proxy.client();
    for (let i = 0; i < 30; i++) expect(await c.get(`o:${i}`)).toBe(`o:v${i}`);
    c.disconnect();
    const monOld = await startMonitor(ctx.source);
    const monNew = await startMonitor(ctx.target);
    try {
      await phaseCli(ap, 'migrate', '--scope', 's:*');
      // A process that joins now has no answer yet for how keys move old -> new: it must find
      // one without MIGRATE.
      const late = await startAdminProxy(ctx, ['--phase', 'hold'], false);
      await waitFor(() => /moves old -> new by dump/.test(late.proxy.stderr) || null, 'the late process chose its method', 20_000, 50);
      const c2 = ap.proxy.client();
      for (let i = 0; i < 30; i++) {
        expect(await c2.get(`s:${i}`)).toBe(`s:v${i}`); // forward: old -> new
        expect(await c2.get(`o:${i}`)).toBe(`o:v${i}`); // coming back: new -> old
      }
      c2.disconnect();
      await Promise.all([monOld.sync(), monNew.sync()]);
      const fence = fencingAt(monOld);
      expect(fence).toBeGreaterThanOrEqual(0);
      const forward = migrateIndexes(monOld).filter((i) => i > fence).map((i) => monOld.commands[i]!.slice(0, 4).join(' '));
      expect(forward, 'MIGRATE old -> new while keys came back new -> old by MIGRATE').toEqual([]);
      expect(migrateIndexes(monNew).length, 'keys came back by MIGRATE').toBeGreaterThan(0);
    } finally {
      await monOld.stop();
      await monNew.stop();
    }
    const neu = ctx.target.client();
    for (let i = 0; i < 30; i++) {
      expect(await neu.get(`s:${i}`)).toBe(`s:v${i}`);
      expect(await old.exists(`o:${i}`)).toBe(1);
      expect(await neu.exists(`o:${i}`)).toBe(0);
    }
    neu.disconnect();
    old.disconnect();
  }, 90_000);

  it('rehome plan during a migration probes MIGRATE only in the direction keys move', async () => {
    const { old } = await migrating(50, 10);
    const mon = await startMonitor(ctx.target);
    try {
      const r = await runCli(['plan', '--source', ctx.source.url, '--target', ctx.target.url]);
      await mon.sync();
      expect(migrateIndexes(mon).map((i) => mon.commands[i]!.slice(0, 4).join(' ')), `MIGRATE new -> old during a migration; plan said:\n${r.stdout}`).toEqual([]);
      expect(r.stdout).toMatch(/keys move old -> new by migrate/);
      expect(r.stdout).toMatch(/new -> old .*not probed: keys are moving old -> new \(phase migrate\)/);
    } finally {
      await mon.stop();
    }
    old.disconnect();
  }, 60_000);
});
