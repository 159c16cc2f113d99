/**
 * Client-side caching across a migration (docs/DESIGN.md, "RESP3 and client-side caching"): a
 * client caches K through rehome, another client (through another rehome process) changes K
 * while K still lives in the old server, once it has moved, and after a phase switch; the first
 * gets an invalidation every time. At a switch the tracking client is carried to a connection
 * that tracks nothing yet, so it is told to drop its whole cache first; a client whose tracking
 * redirects to another connection is closed instead.
 */
import { describe, expect, it } from 'vitest';
import { useAdminProxies, type AdminProxy } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { RawClient, encodeCommand } from '../helpers/resp.js';
import { whereIs } from '../helpers/invariant.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

const INVALIDATE_ALL = '>2\r\n$10\r\ninvalidate\r\n_\r\n';
const invalidate = (k: string): string => `>2\r\n$10\r\ninvalidate\r\n*1\r\n$${k.length}\r\n${k}\r\n`;
const bulk = (v: string): string => `$${v.length}\r\n${v}\r\n`;

async function phase(ap: AdminProxy, to: string): Promise<void> {
  const r = await runCli(['phase', to, '--admin', ap.admin], 30_000);
  expect(r.code, r.stderr + r.stdout).toBe(0);
}

async function connect(ap: AdminProxy): Promise<RawClient> {
  return RawClient.connect(Number(new URL(ap.proxy.url).port));
}

describe('client-side caching while keys move', () => {
  it('the caching client is invalidated in hold, at the switch, while keys move and after', async () => {
    const old = ctx.source.client();
    await old.mset('K1', 'v1', 'K2', 'v2', 'K3', 'v3');
    const aps = [await startAdminProxy(ctx, ['--phase', 'hold'], false), await startAdminProxy(ctx, ['--phase', 'hold'], false)];
    const a = await connect(aps[0]!); // caches
    const b = await connect(aps[1]!); // writes, through the other process
    try {
      expect((await a.command('HELLO', '3')).toString()).toMatch(/^%7\r\n/);
      expect((await a.command('CLIENT', 'TRACKING', 'on')).toString()).toBe('+OK\r\n');

      // Hold: K1 lives in the old server, which serves both clients.
      expect((await a.command('GET', 'K1')).toString()).toBe(bulk('v1'));
      expect((await b.command('SET', 'K1', 'v1b')).toString()).toBe('+OK\r\n');
      expect((await a.readReply()).toString()).toBe(invalidate('K1'));
      expect((await a.command('GET', 'K1')).toString()).toBe(bulk('v1b'));
      expect((await a.command('GET', 'K2')).toString()).toBe(bulk('v2'));

      // The switch: the old server's tracking of K1 and K2 ends with the connection it was on,
      // and their moves will delete them there unseen; the client drops everything instead.
      await phase(aps[0]!, 'migrate');
      expect((await a.readReply()).toString()).toBe(INVALIDATE_ALL);
      expect(a.closed).toBe(false);
      // The new connection speaks RESP3 too (HELLO 3 replayed): a missing key is '_'.
      expect((await a.command('GET', 'no-such-key')).toString()).toBe('_\r\n');

      // K2, cached in hold, is moved by the other client's write: the client was already told.
      expect(await whereIs(ctx.source, ctx.target, 'K2')).toBe('source');
      expect((await b.command('SET', 'K2', 'v2b')).toString()).toBe('+OK\r\n');
      expect(await whereIs(ctx.source, ctx.target, 'K2')).toBe('target');

      // K3 still lives in the old server: reading it moves it, and the new server tracks it.
      expect(await whereIs(ctx.source, ctx.target, 'K3')).toBe('source');
      expect((await a.command('GET', 'K3')).toString()).toBe(bulk('v3'));
      expect(await whereIs(ctx.source, ctx.target, 'K3')).toBe('target');
      expect((await b.command('APPEND', 'K3', '+')).toString()).toBe(':3\r\n');
      expect((await a.readReply()).toString()).toBe(invalidate('K3'));

      // K1 and K2 read again, now from the new server; changed there, deleted there.
      expect((await a.command('MGET', 'K1', 'K2')).toString()).toBe(`*2\r\n${bulk('v1b')}${bulk('v2b')}`);
      expect((await b.command('DEL', 'K1')).toString()).toBe(':1\r\n');
      expect((await a.readReply()).toString()).toBe(invalidate('K1'));
      expect((await b.command('SET', 'K2', 'v2c')).toString()).toBe('+OK\r\n');
      expect((await a.readReply()).toString()).toBe(invalidate('K2'));

      // A second switch (back to the old server): told again, and tracked there once read.
      await phase(aps[1]!, 'reverse');
      expect((await a.readReply()).toString()).toBe(INVALIDATE_ALL);
      expect((await a.command('GET', 'K3')).toString()).toBe(bulk('v3+'));
      expect((await b.command('SET', 'K3', 'w')).toString()).toBe('+OK\r\n');
      expect((await a.readReply()).toString()).toBe(invalidate('K3'));
    } finally {
      a.close();
      b.close();
      old.disconnect();
    }
  }, 90_000);

  it('OPTIN with a CLIENT CACHING yes just before the switch: the read after it is still tracked', async () => {
    const old = ctx.source.client();
    await old.set('O1', 'x');
    const aps = [await startAdminProxy(ctx, ['--phase', 'hold'], false)];
    const a = await connect(aps[0]!);
    const b = await connect(aps[0]!);
    try {
      await a.command('HELLO', '3');
      expect((await a.command('CLIENT', 'TRACKING', 'on', 'OPTIN')).toString()).toBe('+OK\r\n');
      expect((await a.command('CLIENT', 'CACHING', 'yes')).toString()).toBe('+OK\r\n');
      await phase(aps[0]!, 'migrate');
      expect((await a.readReply()).toString()).toBe(INVALIDATE_ALL);
      expect((await a.command('GET', 'O1')).toString()).toBe(bulk('x'));
      expect((await b.command('SET', 'O1', 'y')).toString()).toBe('+OK\r\n');
      expect((await a.readReply()).toString()).toBe(invalidate('O1'));
    } finally {
      a.close();
      b.close();
      old.disconnect();
    }
  }, 60_000);

  it('tracking with REDIRECT is closed at a switch (the id it names belongs to the old phase)', async () => {
    const aps = [await startAdminProxy(ctx, ['--phase', 'hold'], false)];
    const r = await connect(aps[0]!);
    const a = await connect(aps[0]!);
    const plain = await connect(aps[0]!);
    try {
      const id = String(await r.call('CLIENT', 'ID'));
      await r.command('SUBSCRIBE', '__redis__:invalidate');
      expect((await a.command('CLIENT', 'TRACKING', 'on', 'REDIRECT', id)).toString()).toBe('+OK\r\n');
      expect((await plain.command('CLIENT', 'TRACKING', 'on')).toString()).toBe('+OK\r\n'); // RESP2, no redirect
      await phase(aps[0]!, 'migrate');
      expect(await a.waitClosed(10_000)).toBe(true);
      expect(await r.waitClosed(10_000)).toBe(true);
      // The RESP2 client without REDIRECT (it can get no invalidations) is carried.
      plain.write(encodeCommand(['PING']));
      expect((await plain.readReply()).toString()).toBe('+PONG\r\n');
    } finally {
      r.close();
      a.close();
      plain.close();
    }
  }, 60_000);
});
