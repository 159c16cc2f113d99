/**
 * RESP3 through rehome (migrate, keys moved on touch): HELLO 3, pub/sub pushes and client-side
 * caching invalidations, through raw sockets (exact bytes) and through node-redis speaking RESP3.
 * A push must reach the client when it arrives, between two replies, and never take the place of
 * a reply the client still waits for.
 */
import { describe, expect, it } from 'vitest';
import { BasicClientSideCache, createClient } from 'redis';
import { usePair } from '../helpers/fixture.js';
import { assertNoKeyInBoth } from '../helpers/invariant.js';
import { encodeCommand, type RawClient } from '../helpers/resp.js';
import { waitFor } from '../helpers/util.js';

const ctx = usePair();

const push = (...items: Array<string | number | null | string[]>): string =>
  `>${items.length}\r\n` +
  items
    .map((x) =>
      x === null ? '_\r\n'
        : typeof x === 'number' ? `:${x}\r\n`
        : Array.isArray(x) ? `*${x.length}\r\n${x.map((k) => `$${k.length}\r\n${k}\r\n`).join('')}`
        : `$${x.length}\r\n${x}\r\n`,
    )
    .join('');

async function hello3(a: RawClient): Promise<void> {
  const r = (await a.command('HELLO', '3')).toString('latin1');
  expect(r).toMatch(/^%7\r\n/);
  expect(r).toContain('$5\r\nproto\r\n:3\r\n');
}

/** Waits until the target runs `cmd` blocked for some client (so a push meets it in flight). */
async function blockedOnTarget(cmd: string): Promise<void> {
  const t = ctx.target.client();
  try {
    await waitFor(async () => ((await t.client('LIST')) as string).includes(`cmd=${cmd}`) || null, `${cmd} blocked on the target`, 10_000, 20);
  } finally {
    t.disconnect();
  }
}

describe('RESP3 pub/sub through rehome (raw sockets)', () => {
  it('subscribe pushes are the replies, messages arrive while a blocked command waits, and it keeps its place', async () => {
    const a = await ctx.proxy.raw();
    const b = ctx.proxy.client();
    const src = ctx.source.client();
    try {
      await src.set('k', 'v1');
      await hello3(a);
      expect((await a.command('SUBSCRIBE', 'ch')).toString()).toBe(push('subscribe', 'ch', 1));
      // RESP3 has no subscribed mode: a key read still moves the key first.
      expect((await a.command('GET', 'k')).toString()).toBe('$2\r\nv1\r\n');
      a.write(encodeCommand(['BLPOP', 'list', '20']));
      await blockedOnTarget('blpop');
      await b.publish('ch', 'hello');
      expect((await a.readReply()).toString()).toBe(push('message', 'ch', 'hello'));
      await b.rpush('list', 'x');
      expect((await a.readReply()).toString()).toBe('*2\r\n$4\r\nlist\r\n$1\r\nx\r\n');
      // Several acknowledgements and a reply in one pipeline, in the server's order.
      a.write(Buffer.concat([encodeCommand(['SUBSCRIBE', 'c1', 'c2']), encodeCommand(['PING']), encodeCommand(['PSUBSCRIBE', 'p*'])]));
      expect((await a.readReplies(4)).map(String)).toEqual([
        push('subscribe', 'c1', 2), push('subscribe', 'c2', 3), '+PONG\r\n', push('psubscribe', 'p*', 4),
      ]);
      await b.publish('pq', 'm');
      expect((await a.readReply()).toString()).toBe(push('pmessage', 'p*', 'pq', 'm'));
      a.write(Buffer.concat([encodeCommand(['UNSUBSCRIBE']), encodeCommand(['PUNSUBSCRIBE']), encodeCommand(['GET', 'k'])]));
      const rest = (await a.readReplies(5)).map(String);
      // The server picks the channels' order; the counts left (one pattern stays) count down.
      const names = ['ch', 'c1', 'c2'];
      const first = rest.slice(0, 3);
      expect(first.map((x) => names.find((n) => x === push('unsubscribe', n, 3 - first.indexOf(x))))).toEqual(
        expect.arrayContaining(names),
      );
      expect(rest.slice(3)).toEqual([push('punsubscribe', 'p*', 0), '$2\r\nv1\r\n']);
      // With nothing subscribed, UNSUBSCRIBE still answers with one push.
      expect((await a.command('UNSUBSCRIBE')).toString()).toBe(push('unsubscribe', null, 0));
      expect((await a.command('PING')).toString()).toBe('+PONG\r\n');
    } finally {
      a.close();
      b.disconnect();
      src.disconnect();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it("rehome's own replies are RESP3 for a RESP3 client: nulls, merged INFO, errors", async () => {
    const a = await ctx.proxy.raw();
    const src = ctx.source.client();
    try {
      await src.set('only-in-source', '1');
      await hello3(a);
      expect((await a.command('SELECT', '1')).toString()).toBe('+OK\r\n');
      // An empty db: the merged RANDOMKEY is RESP3's null.
      expect((await a.command('RANDOMKEY')).toString()).toBe('_\r\n');
      expect((await a.command('SELECT', '0')).toString()).toBe('+OK\r\n');
      // INFO keyspace, summed over both servers, is the verbatim string the target sends in RESP3.
      const info = (await a.command('INFO', 'keyspace')).toString('latin1');
      expect(info).toMatch(/^=\d+\r\ntxt:# Keyspace\r\ndb0:keys=1,/);
      expect(Number(/^=(\d+)\r\n/.exec(info)![1])).toBe(Buffer.byteLength(info.slice(info.indexOf('\n') + 1, -2), 'latin1'));
      expect((await a.command('DBSIZE')).toString()).toBe(':1\r\n');
      expect((await a.command('KEYS', '*')).toString()).toBe('*1\r\n$14\r\nonly-in-source\r\n');
      expect((await a.command('SCAN', '0', 'COUNT', '1000')).toString()).toMatch(/^\*2\r\n\$\d+\r\n\d+\r\n\*/);
      // A refusal is an error line in both protocols.
      expect((await a.command('SHUTDOWN')).toString()).toMatch(/^-ERR rehome: 'SHUTDOWN' is not supported/);
      // RESET goes back to RESP2.
      expect((await a.command('RESET')).toString()).toBe('+RESET\r\n');
      expect((await a.command('GET', 'nothing')).toString()).toBe('$-1\r\n');
    } finally {
      a.close();
      src.disconnect();
    }
  });
});

describe('client-side caching through rehome (raw sockets)', () => {
  it('default mode: a key read from the source is tracked, and a write by another client invalidates it', async () => {
    const a = await ctx.proxy.raw();
    const b = ctx.proxy.client();
    const src = ctx.source.client();
    try {
      await src.mset('t1', 'a', 't2', 'b');
      await hello3(a);
      expect((await a.command('CLIENT', 'TRACKING', 'on')).toString()).toBe('+OK\r\n');
      expect((await a.command('GET', 't1')).toString()).toBe('$1\r\na\r\n');
      expect((await a.command('MGET', 't2', 'absent')).toString()).toBe('*2\r\n$1\r\nb\r\n_\r\n');
      await b.set('t1', 'a2');
      expect((await a.readReply()).toString()).toBe(push('invalidate', ['t1']));
      await b.del('t2');
      expect((await a.readReply()).toString()).toBe(push('invalidate', ['t2']));
      // A key that was absent everywhere, created by another client.
      await b.set('absent', 'now');
      expect((await a.readReply()).toString()).toBe(push('invalidate', ['absent']));
      // An invalidation that arrives while a reply is pending does not take its place.
      a.write(encodeCommand(['GET', 't1']));
      expect((await a.readReply()).toString()).toBe('$2\r\na2\r\n');
      a.write(encodeCommand(['BLPOP', 'tl', '20']));
      await blockedOnTarget('blpop');
      await b.set('t1', 'a3');
      expect((await a.readReply()).toString()).toBe(push('invalidate', ['t1']));
      await b.rpush('tl', 'x');
      expect((await a.readReply()).toString()).toBe('*2\r\n$2\r\ntl\r\n$1\r\nx\r\n');
    } finally {
      a.close();
      b.disconnect();
      src.disconnect();
    }
  });

  it('BCAST with PREFIX, OPTIN with CLIENT CACHING yes, OPTOUT with CLIENT CACHING no', async () => {
    const bc = await ctx.proxy.raw();
    const oi = await ctx.proxy.raw();
    const oo = await ctx.proxy.raw();
    const b = ctx.proxy.client();
    const src = ctx.source.client();
    try {
      await src.mset('user:1', 'x', 'opt:1', 'y', 'opt:2', 'z');
      for (const c of [bc, oi, oo]) await hello3(c);
      expect((await bc.command('CLIENT', 'TRACKING', 'on', 'BCAST', 'PREFIX', 'user:')).toString()).toBe('+OK\r\n');
      expect((await oi.command('CLIENT', 'TRACKING', 'on', 'OPTIN')).toString()).toBe('+OK\r\n');
      expect((await oo.command('CLIENT', 'TRACKING', 'on', 'OPTOUT')).toString()).toBe('+OK\r\n');
      // BCAST: no read needed; a key with the prefix that still lives in the source, changed.
      await b.set('user:1', 'x2');
      expect((await bc.readReply()).toString()).toBe(push('invalidate', ['user:1']));
      // OPTIN: only the read after CLIENT CACHING yes is tracked.
      oi.write(Buffer.concat([encodeCommand(['GET', 'opt:1']), encodeCommand(['CLIENT', 'CACHING', 'yes']), encodeCommand(['GET', 'opt:2'])]));
      expect((await oi.readReplies(3)).map(String)).toEqual(['$1\r\ny\r\n', '+OK\r\n', '$1\r\nz\r\n']);
      // OPTOUT: the read after CLIENT CACHING no is not tracked.
      oo.write(Buffer.concat([encodeCommand(['CLIENT', 'CACHING', 'no']), encodeCommand(['GET', 'opt:1']), encodeCommand(['GET', 'opt:2'])]));
      expect((await oo.readReplies(3)).map(String)).toEqual(['+OK\r\n', '$1\r\ny\r\n', '$1\r\nz\r\n']);
      await b.mset('opt:1', 'y2', 'opt:2', 'z2');
      expect((await oi.readReply()).toString()).toBe(push('invalidate', ['opt:2']));
      expect((await oo.readReply()).toString()).toBe(push('invalidate', ['opt:2']));
      // Nothing for the key each of them did not track: the next thing each reads is its PONG.
      expect((await oi.command('PING')).toString()).toBe('+PONG\r\n');
      expect((await oo.command('PING')).toString()).toBe('+PONG\r\n');
    } finally {
      for (const c of [bc, oi, oo]) c.close();
      b.disconnect();
      src.disconnect();
    }
  });

  it('REDIRECT to the id another client sees through rehome (RESP2, subscribed to __redis__:invalidate)', async () => {
    const r = await ctx.proxy.raw();
    const a = await ctx.proxy.raw();
    const b = ctx.proxy.client();
    const src = ctx.source.client();
    try {
      await src.set('rk', 'v');
      const id = String(await r.call('CLIENT', 'ID'));
      expect((await r.command('SUBSCRIBE', '__redis__:invalidate')).toString()).toMatch(/^\*3\r\n\$9\r\nsubscribe\r\n/);
      expect((await a.command('CLIENT', 'TRACKING', 'on', 'REDIRECT', id)).toString()).toBe('+OK\r\n');
      expect((await a.command('CLIENT', 'GETREDIR')).toString()).toBe(`:${id}\r\n`);
      expect((await a.command('GET', 'rk')).toString()).toBe('$1\r\nv\r\n');
      await b.set('rk', 'v2');
      expect((await r.readReply()).toString()).toBe('*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$2\r\nrk\r\n');
    } finally {
      r.close();
      a.close();
      b.disconnect();
      src.disconnect();
    }
  });
});

describe('node-redis speaking RESP3 through rehome', () => {
  it('client-side cache: hits until another client changes the key, then the new value', async () => {
    const src = ctx.source.client();
    await src.set('csc', 'one');
    const cache = new BasicClientSideCache();
    const invalidated: Array<string | null> = [];
    cache.on('invalidate', (k: unknown) => invalidated.push(k === null ? null : String(k)));
    const c = createClient({ url: ctx.proxy.url, RESP: 3, clientSideCache: cache });
    c.on('error', () => {});
    const b = ctx.proxy.client();
    try {
      await c.connect();
      expect(await c.get('csc')).toBe('one');
      expect(await c.get('csc')).toBe('one');
      expect(cache.stats().hitCount).toBe(1);
      await b.set('csc', 'two');
      await waitFor(async () => invalidated.includes('csc') || null, 'the invalidation of csc', 10_000, 10);
      expect(await c.get('csc')).toBe('two');
    } finally {
      await c.close();
      b.disconnect();
      src.disconnect();
    }
  });

  it('pub/sub on a RESP3 connection that keeps running commands', async () => {
    const c = createClient({ url: ctx.proxy.url, RESP: 3 });
    c.on('error', () => {});
    const b = ctx.proxy.client();
    try {
      await c.connect();
      const got: string[] = [];
      await c.subscribe('news', (m) => got.push(m));
      await c.set('after-sub', '1');
      expect(await c.get('after-sub')).toBe('1');
      await b.publish('news', 'm1');
      await b.publish('news', 'm2');
      await waitFor(async () => (got.length === 2 ? true : null), 'two messages', 10_000, 10);
      expect(got).toEqual(['m1', 'm2']);
      await c.unsubscribe('news');
      expect(await c.ping()).toBe('PONG');
    } finally {
      await c.close();
      b.disconnect();
    }
  });
});
