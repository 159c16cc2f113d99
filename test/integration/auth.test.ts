/**
 * Authentication: the proxy's URLs carry the servers' credentials; clients authenticate to the
 * target through the proxy (AUTH pw, AUTH user pw, HELLO 2 AUTH). A client that has not
 * authenticated gets NOAUTH and its keys are NOT moved.
 */
import { describe, expect, it } from 'vitest';
import { usePair } from '../helpers/fixture.js';
import { assertNoKeyInBoth, whereIs } from '../helpers/invariant.js';
import { errorOf } from '../helpers/util.js';

describe('requirepass on both servers', () => {
  const ctx = usePair({
    source: { args: ['--requirepass', 'spw'] },
    target: { args: ['--requirepass', 'tpw'] },
  });

  it('the URLs carry the passwords', async () => {
    expect(ctx.source.url).toMatch(/^redis:\/\/:spw@127\.0\.0\.1:\d+$/);
    expect(ctx.target.url).toMatch(/^redis:\/\/:tpw@127\.0\.0\.1:\d+$/);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('without AUTH: NOAUTH, and the key stays in the source', async () => {
    await ctx.source.client().set('secret', 's1');
    const c = ctx.proxy.client();
    expect(await errorOf(c.get('secret'))).toMatch(/^NOAUTH/);
    expect(await errorOf(c.set('secret', 'overwrite'))).toMatch(/^NOAUTH/);
    expect(await errorOf(c.set('fresh', 'x'))).toMatch(/^NOAUTH/);
    expect(await errorOf(c.mget('secret', 'fresh'))).toMatch(/^NOAUTH/);
    expect(await whereIs(ctx.source, ctx.target, 'secret')).toBe('source');
    expect(await whereIs(ctx.source, ctx.target, 'fresh')).toBe('none');
    expect(await ctx.source.client().get('secret')).toBe('s1');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('a wrong password is refused and moves nothing; AUTH pw then moves keys', async () => {
    await ctx.source.client().set('secret', 's1');
    const c = ctx.proxy.client();
    expect(await errorOf(c.call('AUTH', 'wrong'))).toMatch(/^WRONGPASS/);
    expect(await errorOf(c.get('secret'))).toMatch(/^NOAUTH/);
    expect(await whereIs(ctx.source, ctx.target, 'secret')).toBe('source');
    expect(await c.call('AUTH', 'tpw')).toBe('OK');
    expect(await c.get('secret')).toBe('s1');
    expect(await whereIs(ctx.source, ctx.target, 'secret')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('AUTH default pw (two-argument form) and ioredis password option both work', async () => {
    await ctx.source.client().mset('a1', '1', 'a2', '2');
    const c = ctx.proxy.client();
    expect(await c.call('AUTH', 'default', 'tpw')).toBe('OK');
    expect(await c.get('a1')).toBe('1');
    const c2 = ctx.proxy.client({ password: 'tpw' });
    expect(await c2.get('a2')).toBe('2');
    expect(await whereIs(ctx.source, ctx.target, 'a1')).toBe('target');
    expect(await whereIs(ctx.source, ctx.target, 'a2')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('AUTH pipelined with commands in one write applies in order', async () => {
    await ctx.source.client().mset('p1', 'one', 'p2', 'two');
    const r = await ctx.proxy.raw();
    try {
      r.write('GET p1\r\nAUTH tpw\r\nGET p2\r\n');
      const [a, b, c] = await r.readReplies(3);
      expect(a!.toString()).toMatch(/^-NOAUTH/);
      expect(b!.toString()).toBe('+OK\r\n');
      expect(c!.toString()).toBe('$3\r\ntwo\r\n');
    } finally {
      r.close();
    }
    expect(await whereIs(ctx.source, ctx.target, 'p1')).toBe('source');
    expect(await whereIs(ctx.source, ctx.target, 'p2')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('MULTI before AUTH is refused and moves nothing', async () => {
    await ctx.source.client().set('m1', 'x');
    const r = await ctx.proxy.raw();
    try {
      expect((await r.command('MULTI')).toString()).toMatch(/^-NOAUTH/);
      expect((await r.command('GET', 'm1')).toString()).toMatch(/^-NOAUTH/);
      expect((await r.command('EVAL', "return redis.call('GET', KEYS[1])", '1', 'm1')).toString()).toMatch(/^-NOAUTH/);
    } finally {
      r.close();
    }
    expect(await whereIs(ctx.source, ctx.target, 'm1')).toBe('source');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});

describe('ACL users on both servers', () => {
  const ctx = usePair({
    source: { args: ['--requirepass', 'spw', '--user', 'mover', 'on', '>mpw', '~*', '&*', '+@all'], username: 'mover', password: 'mpw' },
    target: { args: ['--requirepass', 'tpw', '--user', 'alice', 'on', '>apw', '~*', '&*', '+@all'], username: 'alice', password: 'apw' },
  });

  it('the URLs carry user and password', async () => {
    expect(ctx.source.url).toMatch(/^redis:\/\/mover:mpw@/);
    expect(ctx.target.url).toMatch(/^redis:\/\/alice:apw@/);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('NOAUTH before AUTH user pw; keys move after it', async () => {
    await ctx.source.client().set('acl:k', 'v');
    const c = ctx.proxy.client();
    expect(await errorOf(c.get('acl:k'))).toMatch(/^NOAUTH/);
    expect(await whereIs(ctx.source, ctx.target, 'acl:k')).toBe('source');
    expect(await errorOf(c.call('AUTH', 'alice', 'wrong'))).toMatch(/^WRONGPASS/);
    expect(await errorOf(c.get('acl:k'))).toMatch(/^NOAUTH/);
    expect(await whereIs(ctx.source, ctx.target, 'acl:k')).toBe('source');
    expect(await c.call('AUTH', 'alice', 'apw')).toBe('OK');
    expect(await c.get('acl:k')).toBe('v');
    expect(await c.call('ACL', 'WHOAMI')).toBe('alice');
    expect(await whereIs(ctx.source, ctx.target, 'acl:k')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('ioredis with username/password and HELLO 2 AUTH both authenticate', async () => {
    await ctx.source.client().mset('h1', '1', 'h2', '2');
    const c = ctx.proxy.client({ username: 'alice', password: 'apw' });
    expect(await c.get('h1')).toBe('1');
    const c2 = ctx.proxy.client();
    const hello = (await c2.call('HELLO', '2', 'AUTH', 'alice', 'apw')) as unknown[];
    expect(hello[hello.indexOf('proto') + 1]).toBe(2);
    expect(await c2.get('h2')).toBe('2');
    expect(await whereIs(ctx.source, ctx.target, 'h1')).toBe('target');
    expect(await whereIs(ctx.source, ctx.target, 'h2')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('the password of the default user works as well', async () => {
    await ctx.source.client().set('d1', 'x');
    const c = ctx.proxy.client();
    expect(await c.call('AUTH', 'tpw')).toBe('OK');
    expect(await c.get('d1')).toBe('x');
    expect(await c.call('ACL', 'WHOAMI')).toBe('default');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});
