/**
 * Connection state behaves as on a direct connection: transactions, WATCH, scripts and functions,
 * blocking commands, pub/sub, client names and ids. Keys named by these commands move first.
 */
import { describe, expect, it } from 'vitest';
import { usePair, useReferenceRedis } from '../helpers/fixture.js';
import { assertNoKeyInBoth, whereIs } from '../helpers/invariant.js';
import { RawClient, show } from '../helpers/resp.js';
import { sleep, withTimeout } from '../helpers/util.js';

const ctx = usePair();
const ref = useReferenceRedis();

describe('transactions', () => {
  it('MULTI/EXEC moves the keys of queued commands', async () => {
    const s = ctx.source.client();
    await s.set('tx:a', '10');
    await s.rpush('tx:l', 'x');
    const c = ctx.proxy.client();
    const res = await c.multi().incrby('tx:a', 5).lpush('tx:l', 'y').get('tx:a').lrange('tx:l', 0, -1).set('tx:new', 'n').exec();
    expect(res).toEqual([
      [null, 15],
      [null, 2],
      [null, '15'],
      [null, ['y', 'x']],
      [null, 'OK'],
    ]);
    for (const k of ['tx:a', 'tx:l', 'tx:new']) expect(await whereIs(ctx.source, ctx.target, k)).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('DISCARD drops the queued commands and the connection stays usable', async () => {
    const s = ctx.source.client();
    await s.set('d:k', 'orig');
    const c = ctx.proxy.client();
    expect(await c.call('MULTI')).toBe('OK');
    expect(await c.call('SET', 'd:k', 'changed')).toBe('QUEUED');
    expect(await c.call('SET', 'd:other', 'x')).toBe('QUEUED');
    expect(await c.call('DISCARD')).toBe('OK');
    expect(await c.get('d:k')).toBe('orig');
    expect(await c.exists('d:other')).toBe(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('WATCH: a watched key modified by another client makes EXEC return null', async () => {
    const s = ctx.source.client();
    await s.set('w:k', '1');
    await s.set('w:free', '1');
    const a = ctx.proxy.client();
    const b = ctx.proxy.client();
    expect(await a.watch('w:k')).toBe('OK');
    // WATCH moved the key first.
    expect(await whereIs(ctx.source, ctx.target, 'w:k')).toBe('target');
    expect(await b.set('w:k', 'by-b')).toBe('OK');
    const res = await a.multi().set('w:k', 'by-a').exec();
    expect(res).toBeNull();
    expect(await a.get('w:k')).toBe('by-b');
    // Unmodified watched key (still in the source when WATCHed): EXEC runs.
    expect(await a.watch('w:free')).toBe('OK');
    const ok = await a.multi().incr('w:free').exec();
    expect(ok).toEqual([[null, 2]]);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('WATCH on a source key that another client then writes through the proxy', async () => {
    const s = ctx.source.client();
    await s.set('w2', 'v');
    const a = ctx.proxy.client();
    const b = ctx.proxy.client();
    await a.watch('w2');
    await b.append('w2', '-more');
    expect(await a.multi().get('w2').exec()).toBeNull();
    expect(await a.get('w2')).toBe('v-more');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});

describe('scripts and functions', () => {
  it('EVAL, EVAL_RO, SCRIPT LOAD + EVALSHA and EVALSHA_RO move their KEYS', async () => {
    const s = ctx.source.client();
    await s.mset('sc1', 'one', 'sc2', 'two', 'sc3', 'three', 'sc4', 'four');
    const c = ctx.proxy.client();
    expect(await c.eval("return redis.call('GET', KEYS[1])", 1, 'sc1')).toBe('one');
    expect(await c.call('EVAL_RO', "return redis.call('GET', KEYS[1])", '1', 'sc2')).toBe('two');
    const sha = (await c.call('SCRIPT', 'LOAD', "return redis.call('GET', KEYS[1]) .. ARGV[1]")) as string;
    expect(sha).toMatch(/^[0-9a-f]{40}$/);
    expect(await c.evalsha(sha, 1, 'sc3', '!')).toBe('three!');
    expect(await c.call('EVALSHA_RO', sha, '1', 'sc4', '?')).toBe('four?');
    for (const k of ['sc1', 'sc2', 'sc3', 'sc4']) expect(await whereIs(ctx.source, ctx.target, k)).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('FUNCTION LOAD + FCALL and FCALL_RO move their KEYS', async () => {
    const s = ctx.source.client();
    await s.mset('fn1', 'alpha', 'fn2', 'beta');
    const c = ctx.proxy.client();
    const lib = [
      '#!lua name=rehometest',
      "redis.register_function('tget', function(keys, args) return redis.call('GET', keys[1]) end)",
      "redis.register_function{function_name='tget_ro', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}",
    ].join('\n');
    expect(await c.call('FUNCTION', 'LOAD', 'REPLACE', lib)).toBe('rehometest');
    expect(await c.call('FCALL', 'tget', '1', 'fn1')).toBe('alpha');
    expect(await c.call('FCALL_RO', 'tget_ro', '1', 'fn2')).toBe('beta');
    for (const k of ['fn1', 'fn2']) expect(await whereIs(ctx.source, ctx.target, k)).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});

describe('blocking commands', () => {
  it('BLPOP: one client blocks, another LPUSHes through the proxy', async () => {
    const a = ctx.proxy.client();
    const b = ctx.proxy.client();
    const pending = a.blpop('bl:q', 5);
    await sleep(200);
    expect(await b.lpush('bl:q', 'hello')).toBe(1);
    expect(await withTimeout(pending, 6_000, 'BLPOP')).toEqual(['bl:q', 'hello']);
    // A list in the source is served immediately (moved first).
    await ctx.source.client().rpush('bl:src', 'first', 'second');
    expect(await a.blpop('bl:src', 1)).toEqual(['bl:src', 'first']);
    expect(await whereIs(ctx.source, ctx.target, 'bl:src')).toBe('target');
    // A timeout returns null.
    expect(await a.blpop('bl:none', 0.1)).toBeNull();
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('BLMOVE moves both keys; blocking BLMOVE wakes on LPUSH', async () => {
    const s = ctx.source.client();
    await s.rpush('bm:src', 'a', 'b');
    await s.rpush('bm:dst', 'z');
    const a = ctx.proxy.client();
    const b = ctx.proxy.client();
    expect(await a.blmove('bm:src', 'bm:dst', 'LEFT', 'RIGHT', 1)).toBe('a');
    expect(await a.lrange('bm:dst', 0, -1)).toEqual(['z', 'a']);
    const pending = a.blmove('bm:empty', 'bm:dst', 'LEFT', 'LEFT', 5);
    await sleep(200);
    await b.rpush('bm:empty', 'late');
    expect(await withTimeout(pending, 6_000, 'BLMOVE')).toBe('late');
    expect(await a.lrange('bm:dst', 0, -1)).toEqual(['late', 'z', 'a']);
    for (const k of ['bm:src', 'bm:dst']) expect(await whereIs(ctx.source, ctx.target, k)).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('BZPOPMIN blocks until ZADD; a source zset is served immediately', async () => {
    await ctx.source.client().zadd('bz:src', 3, 'c', 1, 'a');
    const a = ctx.proxy.client();
    const b = ctx.proxy.client();
    expect(await a.bzpopmin('bz:src', 1)).toEqual(['bz:src', 'a', '1']);
    const pending = a.bzpopmin('bz:q', 5);
    await sleep(200);
    await b.zadd('bz:q', 7, 'm');
    expect(await withTimeout(pending, 6_000, 'BZPOPMIN')).toEqual(['bz:q', 'm', '7']);
    expect(await whereIs(ctx.source, ctx.target, 'bz:src')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('XREAD BLOCK wakes on XADD; a source stream is moved before blocking', async () => {
    await ctx.source.client().xadd('xb:src', '5-1', 'old', '1');
    const a = ctx.proxy.client();
    const b = ctx.proxy.client();
    const pending = a.xread('BLOCK', 5000, 'STREAMS', 'xb:src', 'xb:new', '$', '$');
    await sleep(200);
    expect(await whereIs(ctx.source, ctx.target, 'xb:src')).toBe('target');
    await b.xadd('xb:src', '6-1', 'new', '2');
    expect(await withTimeout(pending, 6_000, 'XREAD BLOCK')).toEqual([['xb:src', [['6-1', ['new', '2']]]]]);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('WAIT 0 0 answers 0', async () => {
    const c = ctx.proxy.client();
    await c.set('wait:k', '1');
    expect(await c.call('WAIT', '0', '0')).toBe(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('a blocked client does not stall other clients', async () => {
    await ctx.source.client().set('other', 'v');
    const a = ctx.proxy.client();
    const b = ctx.proxy.client();
    // a blocks until b pushes: if a's wait stalled b, b's GET would never be answered.
    let aDone = false;
    const pending = a.blpop('stall:q', 0).finally(() => (aDone = true));
    await sleep(100);
    expect(await withTimeout(b.get('other'), 20_000, 'GET while another client blocks')).toBe('v');
    expect(aDone).toBe(false);
    await b.rpush('stall:q', 'x');
    expect(await pending).toEqual(['stall:q', 'x']);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});

describe('pub/sub', () => {
  it('SUBSCRIBE/PSUBSCRIBE receive messages PUBLISHed through the proxy; UNSUBSCRIBE then commands work', async () => {
    const sub = ctx.proxy.client();
    const pub = ctx.proxy.client();
    const got: string[] = [];
    sub.on('message', (ch: string, msg: string) => got.push(`m ${ch} ${msg}`));
    sub.on('pmessage', (pat: string, ch: string, msg: string) => got.push(`p ${pat} ${ch} ${msg}`));
    expect(await sub.subscribe('chan')).toBe(1);
    expect(await sub.psubscribe('news.*')).toBe(2);
    expect(await pub.publish('chan', 'hello')).toBe(1);
    expect(await pub.publish('news.sport', 'goal')).toBe(1);
    expect(await pub.publish('unrelated', 'x')).toBe(0);
    await withTimeout(
      (async () => {
        while (got.length < 2) await sleep(10);
      })(),
      5_000,
      'pub/sub messages',
    );
    expect(got).toEqual(['m chan hello', 'p news.* news.sport goal']);
    await sub.unsubscribe('chan');
    await sub.punsubscribe('news.*');
    await ctx.source.client().set('after-sub', 'ok');
    expect(await sub.get('after-sub')).toBe('ok');
    expect(await whereIs(ctx.source, ctx.target, 'after-sub')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('subscribed-context replies are byte-identical to redis (raw RESP)', async () => {
    const seq: string[][] = [
      ['SUBSCRIBE', 'c1', 'c2'],
      ['PING'],
      ['PING', 'x'],
      ['GET', 'k'],
      ['PSUBSCRIBE', 'p*'],
      ['UNSUBSCRIBE', 'c1', 'c2'],
      ['PUNSUBSCRIBE'],
      ['GET', 'k'],
      ['PING'],
    ];
    const replies = async (port: number): Promise<string[]> => {
      const r = await RawClient.connect(port);
      const out: string[] = [];
      try {
        for (const cmd of seq) {
          r.write(Buffer.from(cmd.join(' ') + '\r\n'));
          // (UN)SUBSCRIBE with two channels replies twice.
          const n = cmd[0] === 'SUBSCRIBE' || cmd[0] === 'UNSUBSCRIBE' ? 2 : 1;
          for (let i = 0; i < n; i++) out.push(show(await r.readReply(5_000)));
        }
      } finally {
        r.close();
      }
      return out;
    };
    const viaProxy = await replies(ctx.proxy.port);
    const direct = await replies(ref.server.port);
    expect(viaProxy).toEqual(direct);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});

describe('commands the proxy refuses', () => {
  it('SHUTDOWN and REPLICAOF through the proxy are refused; the target keeps running', async () => {
    const c = ctx.proxy.client();
    await expect(c.call('SHUTDOWN', 'NOSAVE')).rejects.toThrow(/^ERR rehome: 'shutdown' is not supported through rehome/i);
    await expect(c.call('REPLICAOF', '127.0.0.1', String(ctx.source.port))).rejects.toThrow(/^ERR rehome: 'replicaof' is not supported/i);
    expect(await c.ping()).toBe('PONG');
    expect(await ctx.target.client().ping()).toBe('PONG');
    expect(await ctx.target.client().call('ROLE').then((r) => (r as unknown[])[0])).toBe('master');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SORT with a BY/GET pattern is refused with the documented error; plain SORT works', async () => {
    await ctx.source.client().rpush('srt', '2', '1');
    const c = ctx.proxy.client();
    await expect(c.sort('srt', 'BY', 'w_*')).rejects.toThrow(/^ERR rehome: SORT with BY or GET patterns/);
    await expect(c.sort('srt', 'GET', 'o_*')).rejects.toThrow(/^ERR rehome: SORT with BY or GET patterns/);
    expect(await c.sort('srt')).toEqual(['1', '2']);
    expect(await c.sort('srt', 'BY', 'nosort')).toEqual(['2', '1']);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});

describe('client state', () => {
  it('CLIENT SETNAME/GETNAME/ID are per client connection', async () => {
    const a = ctx.proxy.client();
    const b = ctx.proxy.client();
    expect(await a.call('CLIENT', 'SETNAME', 'app-a')).toBe('OK');
    expect(await a.call('CLIENT', 'GETNAME')).toBe('app-a');
    expect(await b.call('CLIENT', 'GETNAME')).toBeNull();
    const ida = (await a.call('CLIENT', 'ID')) as number;
    const idb = (await b.call('CLIENT', 'ID')) as number;
    expect(typeof ida).toBe('number');
    expect(ida).not.toBe(idb);
    // The name and id are those of an upstream connection on the target.
    const list = (await ctx.target.client().call('CLIENT', 'LIST')) as string;
    const line = list.split('\n').find((l) => / name=app-a /.test(l));
    expect(line).toBeDefined();
    expect(line).toContain(`id=${ida} `);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});
