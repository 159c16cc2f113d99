/**
 * Credentials for MIGRATE and --target-from-source: the source connects to the target itself, so
 * MIGRATE must carry the target's credentials and use the address the source can reach.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { usePair } from '../helpers/fixture.js';
import { assertNoKeyInBoth, whereIs } from '../helpers/invariant.js';
import { startMonitor } from '../helpers/monitor.js';
import { startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { startForwarder, type Forwarder } from '../helpers/tcp.js';
import { errorOf, withTimeout } from '../helpers/util.js';

describe('password-protected source and target', () => {
  const ctx = usePair({
    source: { args: ['--requirepass', 'src-secret'] },
    target: { args: ['--requirepass', 'tgt-secret'] },
  });

  it('MIGRATE to a target with a password works', async () => {
    const s = ctx.source.client();
    await s.set('pk', 'pv', 'PX', 100_000);
    await s.hset('ph', 'a', '1');
    const c = ctx.proxy.client({ password: 'tgt-secret' });
    expect(await c.get('pk')).toBe('pv');
    expect(await c.hgetall('ph')).toEqual({ a: '1' });
    expect(await whereIs(ctx.source, ctx.target, 'pk')).toBe('target');
    expect(await whereIs(ctx.source, ctx.target, 'ph')).toBe('target');
    expect(await ctx.target.client().pttl('pk')).toBeGreaterThan(90_000);
    // Several keys at once (KEYS form with AUTH).
    await s.mset('q1', '1', 'q2', '2', 'q3', '3');
    expect(await c.mget('q1', 'q2', 'q3')).toEqual(['1', '2', '3']);
    for (const k of ['q1', 'q2', 'q3']) expect(await whereIs(ctx.source, ctx.target, k)).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});

describe('ACL user on the target (MIGRATE AUTH2)', () => {
  const ctx = usePair({
    source: { args: ['--requirepass', 'sp'] },
    target: { args: ['--requirepass', 'tp', '--user', 'mig', 'on', '>mp', '~*', '&*', '+@all'], username: 'mig', password: 'mp' },
  });

  it('moves keys with the target user from the URL', async () => {
    await ctx.source.client().mset('u1', 'a', 'u2', 'b');
    const c = ctx.proxy.client({ username: 'mig', password: 'mp' });
    expect(await c.get('u1')).toBe('a');
    expect(await c.mget('u1', 'u2')).toEqual(['a', 'b']);
    expect(await whereIs(ctx.source, ctx.target, 'u2')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});

describe('--target-from-source', () => {
  const ctx = usePair({ target: { args: ['--requirepass', 'tp'] }, autoProxy: false });
  let fwd: Forwarder | undefined;
  let proxy: ProxyHandle | undefined;
  afterEach(async () => {
    await proxy?.stop('SIGTERM', 3_000);
    proxy = undefined;
    await fwd?.close();
    fwd = undefined;
  });

  it('MIGRATE uses the address given by --target-from-source', async () => {
    // The proxy reaches the target through a forwarder; the source reaches it directly.
    fwd = await startForwarder(ctx.target.port);
    proxy = await startProxy({
      source: ctx.source,
      target: `redis://:tp@127.0.0.1:${fwd.port}`,
      args: ['--target-from-source', `127.0.0.1:${ctx.target.port}`],
    });
    await ctx.source.client().set('tfs', 'value');
    const mon = await startMonitor(ctx.source);
    try {
      const c = proxy.client({ password: 'tp' });
      expect(await c.get('tfs')).toBe('value');
      await mon.sync();
      const ms = mon.migrates();
      expect(ms.length).toBe(1);
      expect(ms[0]![1]).toBe('127.0.0.1');
      expect(ms[0]![2]).toBe(String(ctx.target.port));
    } finally {
      await mon.stop();
    }
    expect(await whereIs(ctx.source, ctx.target, 'tfs')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('an unreachable --target-from-source address fails moves cleanly: error, key stays in source', async () => {
    // A port where nothing listens: the forwarder's own port after closing it.
    const dead = await startForwarder(1);
    const deadPort = dead.port;
    await dead.close();
    proxy = await startProxy({
      source: ctx.source,
      target: ctx.target,
      // --force: the pre-flight MIGRATE probe would (rightly) refuse this address at start.
      args: ['--force', '--move-method', 'migrate', '--target-from-source', `127.0.0.1:${deadPort}`, '--migrate-timeout-ms', '1000'],
    });
    await ctx.source.client().set('stuck', 'in-source');
    const c = proxy.client({ password: 'tp' });
    const msg = await withTimeout(errorOf(c.get('stuck')), 10_000, 'GET with an unreachable MIGRATE destination');
    expect(msg).toMatch(/^TRYAGAIN|IOERR/);
    expect(await whereIs(ctx.source, ctx.target, 'stuck')).toBe('source');
    // Keys that do not exist in the source need no connection from the source: NOKEY.
    expect(await c.set('brand-new', 'x')).toBe('OK');
    expect(await c.get('brand-new')).toBe('x');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});
