/**
 * The data path: ordinary clients (ioredis, redis-cli, raw RESP and inline commands) talk to the
 * proxy as to a redis-server; replies are byte-for-byte those of a plain server holding the same data.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { beforeEach, describe, expect, it } from 'vitest';
import { seedAllTypes } from '../helpers/data.js';
import { usePair, useReferenceRedis } from '../helpers/fixture.js';
import { assertNoKeyInBoth, whereIs } from '../helpers/invariant.js';
import { REDIS_CLI, flushAll } from '../helpers/redis.js';
import { RawClient, encodeCommand, parseReply, show } from '../helpers/resp.js';

const execFileP = promisify(execFile);

const ctx = usePair();
const ref = useReferenceRedis();
beforeEach(async () => {
  await flushAll(ref.server);
});

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP(REDIS_CLI, ['-p', String(port), ...args], { timeout: 10_000 });
  return stdout;
}

/** Seeds the same data into the source (behind the proxy) and the reference server. */
async function seedBoth(): Promise<void> {
  const a = ctx.source.client();
  const b = ref.server.client();
  await seedAllTypes(a, { dbs: [0], n: 3 });
  await seedAllTypes(b, { dbs: [0], n: 3 });
  a.disconnect();
  b.disconnect();
}

/** Sends each command on its own round trip to both servers; returns mismatches. */
async function compareSequence(cmds: Array<Array<string | number>>): Promise<string[]> {
  const p = await ctx.proxy.raw();
  const r = await RawClient.connect(ref.server.port);
  const diffs: string[] = [];
  try {
    for (const c of cmds) {
      const [a, b] = [await p.command(...c), await r.command(...c)];
      if (!a.equals(b)) diffs.push(`${c.join(' ')}: proxy ${show(a)} vs redis ${show(b)}`);
    }
  } finally {
    p.close();
    r.close();
  }
  return diffs;
}

describe('data path', () => {
  it('serves basic commands through ioredis', async () => {
    const c = ctx.proxy.client();
    expect(await c.ping()).toBe('PONG');
    expect(await c.set('greeting', 'hello')).toBe('OK');
    expect(await c.get('greeting')).toBe('hello');
    expect(await c.get('nothing-here')).toBeNull();
    expect(await c.incrby('n', 5)).toBe(5);
    expect(await whereIs(ctx.source, ctx.target, 'greeting')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('works with a default-options ioredis client (ready check runs INFO)', async () => {
    const s = ctx.source.client();
    await s.set('ready:k', 'v');
    const c = new Redis({ host: '127.0.0.1', port: ctx.proxy.port, retryStrategy: () => null, commandTimeout: 10_000 });
    c.on('error', () => {});
    try {
      expect(await c.get('ready:k')).toBe('v');
      expect(c.status).toBe('ready');
    } finally {
      c.disconnect();
    }
    expect(await whereIs(ctx.source, ctx.target, 'ready:k')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('serves redis-cli', async () => {
    const s = ctx.source.client();
    await s.set('cli:src', 'from-source');
    await s.rpush('cli:list', 'a', 'b', 'c');
    const port = ctx.proxy.port;
    expect(await cli(port, 'PING')).toBe('PONG\n');
    expect(await cli(port, 'SET', 'cli:new', 'v1')).toBe('OK\n');
    expect(await cli(port, 'GET', 'cli:new')).toBe('v1\n');
    expect(await cli(port, 'GET', 'cli:src')).toBe('from-source\n');
    expect(await cli(port, 'LRANGE', 'cli:list', '0', '-1')).toBe('a\nb\nc\n');
    expect(await cli(port, '-n', '2', 'SET', 'cli:db2', 'x')).toBe('OK\n');
    expect(await cli(port, '-n', '2', 'GET', 'cli:db2')).toBe('x\n');
    expect(await cli(port, 'GET', 'cli:db2')).toBe('\n');
    expect(await whereIs(ctx.source, ctx.target, 'cli:src')).toBe('target');
    expect(await whereIs(ctx.source, ctx.target, 'cli:list')).toBe('target');
    expect(await whereIs(ctx.source, ctx.target, 'cli:db2', 2)).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('accepts inline commands on a raw socket', async () => {
    const s = ctx.source.client();
    await s.set('inline:src', 'old-value');
    const p = await ctx.proxy.raw();
    try {
      p.write('PING\r\n');
      expect((await p.readReply()).toString()).toBe('+PONG\r\n');
      p.write('SET a b\r\n');
      expect((await p.readReply()).toString()).toBe('+OK\r\n');
      p.write('GET a\r\n');
      expect((await p.readReply()).toString()).toBe('$1\r\nb\r\n');
      p.write('GET inline:src\r\n');
      expect((await p.readReply()).toString()).toBe('$9\r\nold-value\r\n');
      // Several inline commands in one write, one with quoted arguments.
      p.write('SET "sp ace" "x y"\r\nGET "sp ace"\r\nPING\r\n');
      const rs = await p.readReplies(3);
      expect(rs.map((b) => b.toString())).toEqual(['+OK\r\n', '$3\r\nx y\r\n', '+PONG\r\n']);
    } finally {
      p.close();
    }
    expect(await whereIs(ctx.source, ctx.target, 'inline:src')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('replies byte-for-byte like redis-server (simple, bulk, integer, null, errors, nested)', async () => {
    await seedBoth();
    const diffs = await compareSequence([
      ['PING'],
      ['PING', 'hello'],
      ['ECHO', 'x y'],
      ['SET', 's1', 'v'],
      ['GET', 's1'],
      ['GET', 'missing'],
      ['GET', 'str:1'],
      ['STRLEN', 'str:2'],
      ['TYPE', 'str:1'],
      ['TYPE', 'list:1'],
      ['TYPE', 'nokey'],
      ['INCR', 'ctr'],
      ['INCRBYFLOAT', 'fl', '1.5'],
      ['LRANGE', 'list:1', 0, -1],
      ['LRANGE', 'nolist', 0, -1],
      ['HGETALL', 'hash:1'],
      ['HGET', 'hash:2', 'f1'],
      ['HGET', 'hash:2', 'nofield'],
      ['SCARD', 'set:1'],
      ['SMISMEMBER', 'set:1', 'x', 'm1-0-1'],
      ['ZRANGE', 'zset:1', 0, -1, 'WITHSCORES'],
      ['ZSCORE', 'zset:2', 'z2-0-2'],
      ['XRANGE', 'stream:1', '-', '+'],
      ['XLEN', 'stream:ttl:1'],
      ['GET', 'list:2'],
      ['MGET', 'str:3', 'nokey', 'list:3', 'str:ttl:1'],
      ['EXISTS', 'str:ttl:2', 'nokey', 'str:ttl:2'],
      ['FOOBAR', 'a', 'b'],
      ['GET'],
      ['SET', 'x', 'y', 'EX', '0'],
      ['INCR', 'str:ttl:3'],
      ['RENAME', 'nokey', 'x'],
      ['BLPOP', 'emptylist', '0.01'],
      ['LPUSH', 'nl', 'a', 'b', 'c'],
      ['LPOP', 'nl', '5'],
      ['LPOP', 'nl'],
      ['GETDEL', 'str:3'],
      ['DEL', 'str:3'],
      ['SET', 'big', 'x'.repeat(20_000)],
      ['GET', 'big'],
      ['SET', 'empty', ''],
      ['GET', 'empty'],
      ['PTTL', 'nokey'],
      ['TTL', 'str:1'],
    ]);
    expect(diffs).toEqual([]);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('replies to MULTI/EXEC byte-for-byte, including errors and nested arrays inside EXEC', async () => {
    await seedBoth();
    const diffs = await compareSequence([
      ['MULTI'],
      ['SET', 't1', 'abc'],
      ['INCR', 't1'],
      ['LRANGE', 'list:2', 0, -1],
      ['XRANGE', 'stream:2', '-', '+'],
      ['HGETALL', 'hash:ttl:1'],
      ['GET', 'str:2'],
      ['GET', 'nothing'],
      ['ZRANGE', 'zset:ttl:2', 0, -1, 'WITHSCORES'],
      ['EXEC'],
      // A command rejected at queue time aborts the transaction.
      ['MULTI'],
      ['SET', 'only-one-arg'],
      ['GET', 'str:ttl:3'],
      ['EXEC'],
      ['EXEC'],
      ['DISCARD'],
      ['MULTI'],
      ['MULTI'],
      ['DISCARD'],
    ]);
    expect(diffs).toEqual([]);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('keeps order for 1000 commands pipelined through ioredis, with moves interleaved', async () => {
    const s = ctx.source.client();
    const seed = s.pipeline();
    for (let i = 0; i < 250; i++) seed.set(`src:${i}`, `source-${i}`);
    await seed.exec();
    const c = ctx.proxy.client();
    const p = c.pipeline();
    const expected: unknown[] = [];
    let counter = 0;
    for (let i = 0; i < 1000; i++) {
      switch (i % 4) {
        case 0:
          p.set(`p:${i}`, `v${i}`);
          expected.push('OK');
          break;
        case 1:
          p.get(`src:${(i - 1) / 4}`);
          expected.push(`source-${(i - 1) / 4}`);
          break;
        case 2:
          p.incr('counter');
          expected.push(++counter);
          break;
        default:
          p.get(`p:${i - 3}`);
          expected.push(`v${i - 3}`);
      }
    }
    const res = await p.exec();
    expect(res).not.toBeNull();
    const errors = res!.filter(([e]) => e !== null).map(([e]) => String(e));
    expect(errors).toEqual([]);
    expect(res!.map(([, v]) => v)).toEqual(expected);
    expect(await s.dbsize()).toBe(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('keeps order for raw pipelined commands in one write (byte-identical to redis)', async () => {
    await seedBoth();
    const cmds: Array<Array<string | number>> = [];
    for (let i = 1; i <= 3; i++) {
      cmds.push(['GET', `str:${i}`], ['SET', `n:${i}`, i], ['LRANGE', `list:${i}`, 0, -1], ['GET', `n:${i}`]);
      cmds.push(['HGETALL', `hash:${i}`], ['SMISMEMBER', `set:${i}`, `m1-0-${i}`, 'zz'], ['INCR', `str:${i}`]);
      cmds.push(['XRANGE', `stream:ttl:${i}`, '-', '+'], ['PING'], ['MGET', `str:ttl:${i}`, `n:${i}`, 'nokey']);
    }
    const payload = Buffer.concat(cmds.map((c) => encodeCommand(c)));
    const p = await ctx.proxy.raw();
    const r = await RawClient.connect(ref.server.port);
    try {
      p.write(payload);
      r.write(payload);
      const a = await p.readReplies(cmds.length);
      const b = await r.readReplies(cmds.length);
      const diffs = cmds
        .map((c, i) => (a[i]!.equals(b[i]!) ? null : `${c.join(' ')}: ${show(a[i]!)} vs ${show(b[i]!)}`))
        .filter((x) => x !== null);
      expect(diffs).toEqual([]);
    } finally {
      p.close();
      r.close();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('keeps every byte of many clients at once, in requests and replies larger than one read', async () => {
    // Every plain socket reads into one reused buffer (src/util/reused-read.ts): what a read
    // brought must be copied out before the next read, of any socket, lands there. Half the
    // clients are pinned to their own connection to the target (CLIENT NO-EVICT), half use the
    // shared one.
    const { randomBytes } = await import('node:crypto');
    const clients = Array.from({ length: 8 }, () => ctx.proxy.client());
    await Promise.all(clients.filter((_, c) => c % 2 === 0).map((cl) => cl.call('CLIENT', 'NO-EVICT', 'ON')));
    const values = clients.map((_, c) => Array.from({ length: 4 }, (_, i) => randomBytes(150_000 + 1_000 * c + i)));
    await Promise.all(
      clients.map(async (cl, c) => {
        const p = cl.pipeline();
        values[c]!.forEach((v, i) => p.set(`big:${c}:${i}`, v));
        for (const [err] of (await p.exec())!) expect(err).toBeNull();
      }),
    );
    const check = ctx.target.client();
    for (let c = 0; c < clients.length; c++) {
      for (let i = 0; i < 4; i++) expect((await check.getBuffer(`big:${c}:${i}`))!.equals(values[c]![i]!)).toBe(true);
    }
    check.disconnect();
    // Read back through the proxy, every client at once, each reading another's keys.
    const got = await Promise.all(
      clients.map(async (cl, c) => {
        const p = cl.pipeline();
        for (let i = 0; i < 4; i++) p.getBuffer(`big:${(c + 1) % clients.length}:${i}`);
        return (await p.exec())!.map(([, v]) => v as Buffer);
      }),
    );
    got.forEach((vs, c) => vs.forEach((v, i) => expect(v.equals(values[(c + 1) % clients.length]![i]!)).toBe(true)));
  });

  it('answers commands the server does not know exactly as the server does, also inside MULTI', async () => {
    await seedBoth();
    const diffs = await compareSequence([
      ['NOSUCHCMD', 'str:1', 'x'],
      ['FOO'],
      // Names of Object.prototype's members are unknown commands like any other.
      ['constructor'],
      ['__proto__', 'str:1'],
      ['MULTI'],
      ['SET', 'str:1', 'changed'],
      ['NOSUCHCMD', 'str:1'],
      ['EXEC'],
      ['GET', 'str:1'],
    ]);
    expect(diffs).toEqual([]);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('answers HELLO, HELLO 2 and HELLO 3 as the target does (RESP3 replies after HELLO 3)', async () => {
    const c = ctx.proxy.client();
    const hello = (await c.call('HELLO')) as unknown[];
    expect(Array.isArray(hello)).toBe(true);
    expect(hello[hello.indexOf('proto') + 1]).toBe(2);
    const hello2 = (await c.call('HELLO', '2')) as unknown[];
    expect(hello2[hello2.indexOf('proto') + 1]).toBe(2);
    expect(hello2[hello2.indexOf('server') + 1]).toBe('redis');

    const p = await ctx.proxy.raw();
    try {
      const r = await p.command('HELLO', '3');
      expect(r.toString()).toMatch(/^%7\r\n/);
      const h3 = parseReply(r) as unknown[];
      expect(h3[h3.indexOf('proto') + 1]).toBe(3);
      // The connection now speaks RESP3: a null is '_', a hash a map.
      expect((await p.command('GET', 'no-such-key')).toString()).toBe('_\r\n');
      expect((await p.command('HSET', 'after-hello', 'f', 'v')).toString()).toBe(':1\r\n');
      expect((await p.command('HGETALL', 'after-hello')).toString()).toBe('%1\r\n$1\r\nf\r\n$1\r\nv\r\n');
      // HELLO 4 is refused by the server, and the protocol stays RESP3.
      expect((await p.command('HELLO', '4')).toString()).toMatch(/^-NOPROTO/);
      expect((await p.command('GET', 'no-such-key')).toString()).toBe('_\r\n');
      const h2 = parseReply(await p.command('HELLO', '2'));
      expect(Array.isArray(h2)).toBe(true);
      expect((await p.command('GET', 'no-such-key')).toString()).toBe('$-1\r\n');
    } finally {
      p.close();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});
