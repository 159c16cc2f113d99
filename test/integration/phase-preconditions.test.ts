/**
 * The preconditions of a fenced switch are decided inside the fence (docs/DESIGN.md, "Phases"): a write
 * that lands between an early check and the fence must not slip through.
 *
 * How the window is held open without a timing race: the test pauses writes on the old server
 * (CLIENT PAUSE WRITE), so the switcher's first fencing step (a script on the old server) waits,
 * while reads on the old server and everything on the new server go on. A key then lands on the
 * new server (in the first test, from another rehome process of the current epoch, whose
 * known-absent cache lets it send a write straight to the new server), and the pause is lifted.
 */
import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { fetchStatus, useAdminProxies, type AdminProxy } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { startMonitor } from '../helpers/monitor.js';
import { waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

const PHASE_KEY = '__rehome:phase';

interface Status {
  phase: string;
  epoch: number | null;
}

/** Waits until a process serves a settled phase (not fencing) at `epoch`. */
async function settledAt(ap: AdminProxy, epoch: number): Promise<Status> {
  return waitFor(
    async () => {
      const st = await fetchStatus<Status>(ap.admin);
      return st.epoch === epoch && st.phase !== 'fencing' ? st : null;
    },
    `a settled phase at epoch ${epoch}`,
    15_000,
    50,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\nproxy stderr:\n${ap.proxy.stderr.slice(-3000)}`);
  });
}

async function dataKeysOnNew(neu: Redis): Promise<number> {
  const text = await neu.info('keyspace');
  let n = 0;
  for (const m of text.matchAll(/^db\d+:keys=(\d+)/gm)) n += Number(m[1]);
  return n;
}

/**
 * Asks `ap` to switch to `to` and runs `inWindow` while the switch is between its emptiness
 * check and its first fencing step; returns the admin reply.
 */
async function switchInWindow(
  ap: AdminProxy,
  to: string,
  inWindow: () => Promise<void>,
): Promise<{ res: Response; body: { error?: string; from?: string; to?: string; epoch?: number } }> {
  const mon = await startMonitor(ctx.target);
  const pauser = ctx.source.client();
  let reply: Promise<Response> | null = null;
  try {
    await pauser.call('CLIENT', 'PAUSE', '30000', 'WRITE');
    reply = fetch(`http://${ap.admin}/phase?to=${to}`, { method: 'POST' });
    // The emptiness check needs nothing from the old server, so it has run once the new server
    // sees its INFO keyspace; the fence itself is still held back by the pause. (A switch that
    // checked only inside the fence would send no INFO yet: go on after a while, and the key
    // simply lands before the fence.) The while is long: on a loaded machine the check came
    // after the 3 s this waited before, the key landed before it, and the switch was refused
    // by the check outside the fence instead of the one inside it.
    await waitFor(
      () => mon.commands.some((a) => a[0]?.toLowerCase() === 'info' && a[1]?.toLowerCase() === 'keyspace'),
      'the emptiness check on the new server',
      20_000,
      5,
    ).catch(() => undefined);
    await inWindow();
  } finally {
    await pauser.call('CLIENT', 'UNPAUSE');
    pauser.disconnect();
    await mon.stop();
  }
  const res = await reply!;
  return { res, body: (await res.json()) as { error?: string; from?: string; to?: string; epoch?: number } };
}

describe('phase hold: the new server must be empty inside the fence', () => {
  it('a write acknowledged between the emptiness check and the fence is neither hidden nor undone', async () => {
    const old = ctx.source.client();
    const neu = ctx.target.client();
    await old.set('stays-old', '1');
    const switcher = await startAdminProxy(ctx, ['--phase', 'migrate'], false);
    const writer = await startAdminProxy(ctx, ['--phase', 'migrate'], false);

    // The writer learns that x is absent from the old server (the DEL moves nothing and reaches
    // the new server as a no-op): its later SET of x needs nothing from the old server.
    const c = writer.proxy.client();
    expect(await c.del('x')).toBe(0);
    expect(await dataKeysOnNew(neu)).toBe(0);

    const { res, body } = await switchInWindow(switcher, 'hold', async () => {
      expect(await c.set('x', 'acked')).toBe('OK');
    });

    // Every process follows the epoch the switch began, whatever phase it ended in.
    await settledAt(switcher, 2);
    await settledAt(writer, 2);
    const c2 = writer.proxy.client();
    expect(await c2.get('x'), `the write acknowledged inside the window is hidden; switch reply: ${JSON.stringify(body)}`).toBe('acked');
    expect(await old.hget(PHASE_KEY, 'phase')).toBe('migrate');
    expect(res.status).toBe(409);
    expect(body.error).toMatch(/^cannot switch to hold: the new server holds 1 keys, which clients would no longer see/);
    expect(body.error).toMatch(/the phase is migrate again \(epoch 2\)/);
    expect((await fetchStatus<Status>(switcher.admin)).phase).toBe('migrate');
    expect((await fetchStatus<Status>(writer.admin)).phase).toBe('migrate');

    // The acknowledged DEL stays done: nothing brings x back later.
    expect(await c2.del('x')).toBe(1);
    expect(await neu.exists('x')).toBe(0);
    expect(await old.exists('x')).toBe(0);

    // With the new server empty again, the same switch goes through (and needs one more epoch).
    const again = await fetch(`http://${switcher.admin}/phase?to=hold`, { method: 'POST' });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(await again.json()).toMatchObject({ from: 'migrate', to: 'hold', epoch: 3 });
    await settledAt(writer, 3);
    const c3 = writer.proxy.client();
    expect(await c3.get('stays-old')).toBe('1');
    expect(await c3.get('x')).toBeNull();
    c.disconnect();
    c2.disconnect();
    c3.disconnect();
    old.disconnect();
    neu.disconnect();
  });

  it('abandoned after a switch that died while fencing: the phase of before that switch comes back', async () => {
    const old = ctx.source.client();
    const neu = ctx.target.client();
    const switcher = await startAdminProxy(ctx, ['--phase', 'migrate'], false);
    const other = await startAdminProxy(ctx, ['--phase', 'migrate'], false);
    // What a switcher to reverse leaves behind when it dies after its first step.
    await old.hset(PHASE_KEY, 'phase', 'fencing', 'epoch', '2', 'next', 'reverse', 'prev', 'migrate', 'by', 'a dead switcher');
    for (const ap of [switcher, other]) {
      await waitFor(async () => ((await fetchStatus<Status>(ap.admin)).phase === 'fencing' ? true : null), 'fencing', 5_000, 50);
    }
    // A key the fence does not stop (written straight to the new server) lands after the check.
    const { res, body } = await switchInWindow(switcher, 'hold', async () => {
      expect(await neu.set('late', '1')).toBe('OK');
    });
    expect(res.status, JSON.stringify(body)).toBe(409);
    expect(body.error).toMatch(/^cannot switch to hold: the new server holds 1 keys/);
    expect(body.error).toMatch(/the switch was abandoned after fencing began: the phase is migrate again \(epoch 3\)/);
    expect(await old.hmget(PHASE_KEY, 'phase', 'epoch', 'prev')).toEqual(['migrate', '3', null]);
    for (const ap of [switcher, other]) expect((await settledAt(ap, 3)).phase).toBe('migrate');
    const c = other.proxy.client();
    expect(await c.get('late')).toBe('1');
    c.disconnect();
    old.disconnect();
    neu.disconnect();
  });
});
