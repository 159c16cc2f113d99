/**
 * A canary migration serves keys out of its scope from the old server as the client itself: its
 * AUTH is replayed on its connection to the old server (src/session/old-side.ts), not rehome's
 * own credentials, and a new AUTH (another identity) opens a new connection.
 */
import { describe, expect, it } from 'vitest';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { freePort } from '../helpers/redis.js';
import { errorOf } from '../helpers/util.js';

// The same users on both servers: `reader` may only read; rehome's URLs carry `default`'s password.
const USERS = ['--requirepass', 'pw', '--user', 'reader', 'on', '>rpw', '~*', '&*', '+@read', '+@connection', '+client'];
const ctx = usePair({ source: { args: USERS }, target: { args: USERS }, autoProxy: false });

describe('canary: the old server serves keys out of scope as the client', () => {
  it('a read-only user cannot write out of scope through rehome; after AUTH as default it can', async () => {
    const admin = `127.0.0.1:${await freePort()}`;
    await ctx.restartProxy(['--phase', 'hold', '--admin', admin]);
    const r = await runCli(['phase', 'migrate', '--admin', admin, '--scope', 'a:*']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const old = ctx.source.client();
    await old.set('b:1', 'old');
    const c = ctx.proxy.client();
    await c.call('AUTH', 'reader', 'rpw');
    expect(await c.get('b:1')).toBe('old'); // out of scope: the old server, as reader
    expect(await errorOf(c.set('b:1', 'x'))).toMatch(/^NOPERM/);
    expect(await errorOf(c.set('a:1', 'x'))).toMatch(/^NOPERM/); // in scope: the new server refuses reader too
    await c.call('AUTH', 'default', 'pw');
    expect(await c.set('b:1', 'new')).toBe('OK');
    expect(await old.get('b:1')).toBe('new');
    old.disconnect();
  });
});
