/**
 * SCAN and KEYS through rehome while keys come back after a narrowing (docs/DESIGN.md "Scope",
 * point 7). Keys in scope move old -> new and keys that left the scope move new -> old, so a walk
 * of the old server then the new one could miss a key that moved back to the old server after its
 * walk: SCAN's guarantee (a key present for the whole scan is returned) must still hold, and KEYS
 * must return every key present throughout.
 */
import { describe, expect, it } from 'vitest';
import { fetchStatus, noKeyInBoth, useAdminProxies, type AdminProxy } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { connect } from '../helpers/invariant.js';
import { runCli } from '../helpers/proxy.js';
import { prng, waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

type Json = Record<string, any>;

async function cli(ap: AdminProxy, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '--admin', ap.admin]);
  expect(r.code, r.stderr + r.stdout).toBe(0);
  return r.stdout;
}

async function waitStatus(ap: AdminProxy, what: string, f: (st: Json) => boolean): Promise<void> {
  await waitFor(async () => f(await fetchStatus<Json>(ap.admin)), what, 60_000, 100);
}

/**
 * A fleet of one process in a scoped migrate of `in:*` and `back:*` whose keys are all on the new
 * server, then narrowed to `in:*`: the `back:` keys are coming back. `args` are the proxy's.
 */
async function narrowed(nIn: number, nBack: number, args: string[], paused = false): Promise<AdminProxy> {
  const ap = await startAdminProxy(ctx, ['--phase', 'hold', ...args]);
  const old = connect(ctx.source);
  // Keys out of every scope: they stay on the old server throughout.
  const p = old.pipeline();
  for (let i = 0; i < 200; i++) p.set(`out:${i}`, 'o');
  await p.exec();
  old.disconnect();
  await cli(ap, 'phase', 'migrate', '--scope', 'in:*', '--scope', 'back:*');
  // Written through rehome while in scope: they land on the new server.
  const c = ap.proxy.client();
  const w = c.pipeline();
  for (let i = 0; i < nIn; i++) w.set(`in:${i}`, 'i');
  for (let i = 0; i < nBack; i++) w.set(`back:${i}`, 'b');
  await w.exec();
  c.disconnect();
  // Paused: nothing comes back by itself (the setting is the fleet's, kept across the switch).
  if (paused) await cli(ap, 'sweeper', 'pause');
  await cli(ap, 'phase', 'migrate', '--scope', 'in:*');
  return ap;
}

function expected(nIn: number, nBack: number): string[] {
  return [
    ...Array.from({ length: 200 }, (_, i) => `out:${i}`),
    ...Array.from({ length: nIn }, (_, i) => `in:${i}`),
    ...Array.from({ length: nBack }, (_, i) => `back:${i}`),
  ];
}

function missing(want: string[], seen: Set<string>): string[] {
  return want.filter((k) => !seen.has(k));
}

describe('SCAN and KEYS through rehome while keys come back after a narrowing', () => {
  it('returns a key that came back to the old server after the old server was walked (with and without MATCH)', async () => {
    // Nothing comes back by itself: the keys below move when the test touches them.
    const ap = await narrowed(50, 300, [], true);
    const scanner = ap.proxy.client();
    const toucher = ap.proxy.client();
    const neu = connect(ctx.target);
    // Without MATCH the last walk asks the server for each pattern that came back; with the
    // client's MATCH it passes that on.
    for (const match of [[], ['MATCH', 'back:*'], ['MATCH', '*:1*']]) {
      const seen = new Set<string>();
      // One page walks the whole old server (COUNT larger than its keys).
      let [cursor, keys] = (await scanner.call('SCAN', '0', 'COUNT', '100000', ...match)) as [string, string[]];
      for (const k of keys) seen.add(k);
      expect(cursor).not.toBe('0');
      // A key still on the new server moves back before the new server is walked.
      let moved: string | null = null;
      for (let i = 100; i < 200 && moved === null; i++) if ((await neu.exists(`back:${i}`)) === 1) moved = `back:${i}`;
      expect(moved, 'a back: key still on the new server').not.toBeNull();
      expect(seen.has(moved!)).toBe(false);
      expect(await toucher.get(moved!)).toBe('b');
      expect(await neu.exists(moved!)).toBe(0);
      while (cursor !== '0') {
        [cursor, keys] = (await scanner.call('SCAN', cursor, 'COUNT', '100', ...match)) as [string, string[]];
        for (const k of keys) seen.add(k);
      }
      const glob = match.length === 0 ? /./ : match[1] === 'back:*' ? /^back:/ : /^[^:]*:1/;
      const want = expected(50, 300).filter((k) => glob.test(k));
      expect(missing(want, seen), `SCAN ${match.join(' ')}`).toEqual([]);
      expect([...seen].filter((k) => !glob.test(k)), `SCAN ${match.join(' ')}: keys its MATCH leaves out`).toEqual([]);
    }
    neu.disconnect();
    await cli(ap, 'sweeper', 'resume');
    await noKeyInBoth(ctx, [ap]);
  }, 60_000);

  it('every full SCAN returns every key while thousands come back by the sweep and by touches', async () => {
    const nIn = 300;
    const nBack = 2000;
    // Slow enough that the keys come back during many scans (about 4 s; a full scan takes tens of ms).
    const ap = await narrowed(nIn, nBack, ['--sweep-rate', '500']);
    const want = expected(nIn, nBack);
    const scanner = ap.proxy.client();
    const toucher = ap.proxy.client();
    let touching = true;
    const rnd = prng(7);
    const touches = (async () => {
      while (touching) await toucher.get(`back:${Math.floor(rnd() * nBack)}`);
    })();
    const neu = connect(ctx.target);
    let scans = 0;
    let scansWhileReturning = 0;
    try {
      // Full scans until every key is home, and one more after.
      for (let home = false; !home || scans === 0; scans++) {
        home = (await neu.keys('back:*')).length === 0;
        if (!home) scansWhileReturning++;
        const seen = new Set<string>();
        let cursor = '0';
        do {
          const [next, keys] = await scanner.scan(cursor, 'COUNT', 50);
          cursor = next;
          for (const k of keys) seen.add(k);
        } while (cursor !== '0');
        expect(missing(want, seen).slice(0, 10), `scan ${scans}: keys present throughout but not returned`).toEqual([]);
      }
    } finally {
      touching = false;
      await touches;
      neu.disconnect();
    }
    expect(scansWhileReturning).toBeGreaterThan(0);
    await waitStatus(ap, 'every key home', (s) => s.scope?.returning?.length === 0);
    await noKeyInBoth(ctx, [ap]);
  }, 180_000);

  it('every KEYS returns every key while thousands come back', async () => {
    const nIn = 200;
    const nBack = 2000;
    // About 3 s of keys coming back, many KEYS calls meanwhile.
    const ap = await narrowed(nIn, nBack, ['--sweep-rate', '700']);
    const want = expected(nIn, nBack);
    const c = ap.proxy.client();
    const neu = connect(ctx.target);
    let calls = 0;
    try {
      for (let home = false; !home || calls === 0; calls++) {
        home = (await neu.keys('back:*')).length === 0;
        const seen = new Set(await c.keys('*'));
        expect(missing(want, seen).slice(0, 10), `KEYS ${calls}: keys present throughout but not returned`).toEqual([]);
      }
    } finally {
      neu.disconnect();
    }
    await noKeyInBoth(ctx, [ap]);
  }, 180_000);
});
