/**
 * The holes an adversarial review found (ACL bypass through the source, connection state that
 * changed on a refused request, reserved keys reached through COMMAND GETKEYS, blocking commands
 * left running for a client that is gone, counts that were not exact) and the replies that differed
 * from a direct connection. Each test failed before its fix.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { useAdminProxies } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { assertNoKeyInBoth, connect, whereIs } from '../helpers/invariant.js';
import { RespError, parseReply } from '../helpers/resp.js';
import { errorOf, sleep, waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });

/** A fresh proxy before each test of the calling describe (the others start their own). */
function useDefaultProxy(): void {
  beforeEach(async () => {
    await ctx.restartProxy();
  });
}

/** An ACL user on the target denied `denied` (command names), and a direct client of it. */
async function limitedUser(denied: string[]): Promise<Redis> {
  const t = ctx.target.client();
  await t.call('ACL', 'SETUSER', 'limited', 'reset', 'on', '>pw', '~*', '&*', '+@all', ...denied.map((c) => `-${c}`));
  const direct = ctx.target.client(0, { username: 'limited', password: 'pw' });
  t.disconnect();
  return direct;
}

async function deleteUser(): Promise<void> {
  const t = ctx.target.client();
  await t.call('ACL', 'DELUSER', 'limited');
  t.disconnect();
}

describe('rule 5: nothing is done in the source for a client the target would refuse', () => {
  useDefaultProxy();

  const KEYSPACE_WIDE = ['flushall', 'flushdb', 'swapdb', 'scan', 'randomkey', 'keys', 'dbsize', 'info'];

  it('FLUSHALL, FLUSHDB, SCAN, KEYS, DBSIZE, RANDOMKEY and INFO get the target\'s own NOPERM and touch nothing', async () => {
    const s = ctx.source.client();
    await s.mset('acl:a', '1', 'acl:b', '2');
    const direct = await limitedUser(KEYSPACE_WIDE);
    const c = ctx.proxy.client({ username: 'limited', password: 'pw' });
    const cases: Array<[string, ...string[]]> = [
      ['FLUSHALL'], ['FLUSHDB'], ['SCAN', '0'], ['KEYS', '*'], ['DBSIZE'], ['RANDOMKEY'], ['INFO', 'keyspace'], ['INFO'],
    ];
    for (const [cmd, ...args] of cases) {
      const want = await errorOf(direct.call(cmd, ...args));
      expect(want).toMatch(/^NOPERM/);
      expect(await errorOf(c.call(cmd, ...args))).toBe(want);
    }
    expect(await s.get('acl:a')).toBe('1');
    expect(await s.get('acl:b')).toBe('2');
    c.disconnect();
    direct.disconnect();
    s.disconnect();
    await deleteUser();
  });

  it('a user allowed them still gets the merged answers', async () => {
    const s = ctx.source.client();
    await s.mset('ok:a', '1', 'ok:b', '2');
    await limitedUser(['get']);
    const c = ctx.proxy.client({ username: 'limited', password: 'pw' });
    expect(await c.dbsize()).toBe(2);
    expect((await c.keys('*')).sort()).toEqual(['ok:a', 'ok:b']);
    expect(await c.scan('0', 'COUNT', '100')).toEqual(['2', expect.arrayContaining(['ok:a', 'ok:b'])]);
    expect(['ok:a', 'ok:b']).toContain(await c.randomkey());
    expect(await c.flushdb()).toBe('OK');
    expect(await s.dbsize()).toBe(0);
    c.disconnect();
    s.disconnect();
    await deleteUser();
  });
});

describe('rule 6: connection state follows the server\'s OK', () => {
  useDefaultProxy();

  it('a SELECT the server refuses (01, -1, +1, out of range, ACL) leaves the db where keys move', async () => {
    const s = ctx.source.client();
    await s.set('sel:k', 'old');
    const ref = ctx.target.client();
    const c = ctx.proxy.client();
    for (const arg of ['01', '-1', '+1', ' 1', '16', '1x']) {
      expect(await errorOf(c.call('SELECT', arg))).toBe(await errorOf(ref.call('SELECT', arg)));
      expect(await c.call('SET', 'sel:k', `new-${arg}`)).toBe('OK');
    }
    expect(await whereIs(ctx.source, ctx.target, 'sel:k')).toBe('target');
    await s.set('sel:acl', 'old');
    const direct = await limitedUser(['select']);
    const lim = ctx.proxy.client({ username: 'limited', password: 'pw' });
    expect(await errorOf(lim.call('SELECT', '1'))).toBe(await errorOf(direct.call('SELECT', '1')));
    expect(await lim.call('SET', 'sel:acl', 'new')).toBe('OK');
    expect(await whereIs(ctx.source, ctx.target, 'sel:acl')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
    for (const x of [c, lim, direct, ref, s]) x.disconnect();
    await deleteUser();
  });

  it('SELECT 01 pipelined with a write: the write moves the key in db 0', async () => {
    const s = ctx.source.client();
    await s.set('p:k', 'old');
    const raw = await ctx.proxy.raw();
    raw.write('*2\r\n$6\r\nSELECT\r\n$2\r\n01\r\n*3\r\n$3\r\nSET\r\n$3\r\np:k\r\n$3\r\nnew\r\n');
    const [sel, set] = await raw.readReplies(2);
    expect(parseReply(sel!)).toEqual(new RespError('ERR value is not an integer or out of range'));
    expect(parseReply(set!)).toBe('OK');
    expect(await whereIs(ctx.source, ctx.target, 'p:k')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
    raw.close();
    s.disconnect();
  });

  it('a SELECT inside a MULTI whose EXEC fails leaves the db unchanged for pipelined commands', async () => {
    const s = ctx.source.client();
    await s.set('m:k', 'old');
    const raw = await ctx.proxy.raw();
    raw.write(
      '*1\r\n$5\r\nMULTI\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n*1\r\n$6\r\nNOSUCH\r\n*1\r\n$4\r\nEXEC\r\n' +
        '*3\r\n$3\r\nSET\r\n$3\r\nm:k\r\n$3\r\nnew\r\n',
    );
    const replies = (await raw.readReplies(5)).map((b) => parseReply(b));
    expect(replies[3]).toBeInstanceOf(RespError);
    expect((replies[3] as RespError).error).toMatch(/^EXECABORT/);
    expect(replies[4]).toBe('OK');
    expect(await whereIs(ctx.source, ctx.target, 'm:k')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
    raw.close();
    s.disconnect();
  });

  it('HELLO 02 and HELLO 4 get the server\'s own errors', async () => {
    const c = ctx.proxy.client();
    expect(await errorOf(c.call('HELLO', '02'))).toBe('ERR Protocol version is not an integer or out of range');
    expect(await errorOf(c.call('HELLO', '4'))).toMatch(/^NOPROTO/);
    expect(await c.call('HELLO', '2')).toContain('proto');
    c.disconnect();
  });
});

describe('SWAPDB while keys move (rule 1)', () => {
  useDefaultProxy();

  it('is refused with a clear error by every process, and nothing is swapped', async () => {
    const s = ctx.source.client();
    await s.set('sw:k', 'db0');
    const other = await ctx.extraProxy();
    for (const p of [ctx.proxy, other]) {
      const c = p.client();
      expect(await errorOf(c.swapdb(0, 1))).toMatch(/^ERR rehome: SWAPDB .*migrat/);
      c.disconnect();
    }
    expect(await s.get('sw:k')).toBe('db0');
    s.disconnect();
  });
});

describe('reserved keys on every path', () => {
  useDefaultProxy();

  it('SORT ... STORE, MOVE, COPY, and GETKEYS-found keys naming __rehome:* are refused', async () => {
    const s = ctx.source.client();
    await s.rpush('rl', '3', '1', '2');
    await s.set('rs', 'v');
    const c = ctx.proxy.client();
    expect(await errorOf(c.call('SORT', 'rl', 'STORE', '__rehome:phase'))).toMatch(/reserved/);
    expect(await errorOf(c.call('MOVE', '__rehome:phase', '1'))).toMatch(/reserved/);
    expect(await errorOf(c.call('COPY', 'rs', '__rehome:phase'))).toMatch(/reserved/);
    expect(await errorOf(c.call('COPY', '__rehome:phase', 'x', 'DB', '1'))).toMatch(/reserved/);
    expect(await errorOf(c.call('EVAL', 'return 1', '1', '__rehome:x'))).toMatch(/reserved/);
    const t = ctx.target.client();
    expect(await t.exists('__rehome:phase')).toBe(0);
    expect(await c.call('SORT', 'rl', 'STORE', 'sorted')).toBe(3);
    c.disconnect();
    t.disconnect();
    s.disconnect();
  });
});

describe('a client that goes away while blocked', () => {
  useDefaultProxy();

  for (const how of ['closes', 'half-closes'] as const) {
    it(`${how}: nothing is popped for it afterwards`, async () => {
      const raw = await ctx.proxy.raw();
      raw.write('*3\r\n$5\r\nBLPOP\r\n$2\r\nbl\r\n$1\r\n0\r\n');
      const t = ctx.target.client();
      await waitFor(async () => ((await t.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string).includes('cmd=blpop'), 'BLPOP running');
      if (how === 'closes') raw.close();
      else raw.end();
      await waitFor(async () => !((await t.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string).includes('cmd=blpop'), 'BLPOP ended', 3_000);
      const c = ctx.proxy.client();
      await c.lpush('bl', 'x');
      await sleep(100);
      expect(await c.lrange('bl', 0, -1)).toEqual(['x']);
      c.disconnect();
      t.disconnect();
    });
  }
});

describe('replies as on a direct connection', () => {
  useDefaultProxy();

  it('SORT GET without a star looks nothing up (nils) during a migration', async () => {
    const s = ctx.source.client();
    await s.rpush('sg', '2', '1');
    const c = ctx.proxy.client();
    expect(await c.call('SORT', 'sg', 'GET', 'nostar')).toEqual([null, null]);
    expect(await c.call('SORT', 'sg', 'BY', 'nosort', 'GET', '#')).toEqual(['2', '1']);
    expect(await errorOf(c.call('SORT', 'sg', 'BY', 'w_*'))).toMatch(/SORT with BY or GET patterns/);
    c.disconnect();
    s.disconnect();
  });

  it('INFO works inside MULTI during a migration, its keyspace section summed over both servers', async () => {
    const s = ctx.source.client();
    await s.mset('im:a', '1', 'im:b', '2', 'im:c', '3');
    const c = ctx.proxy.client();
    await c.set('im:new', 'x');
    const r = await c.multi().info('server').get('im:a').info().info('keyspace').config('GET', 'maxmemory').exec();
    expect(r![0]![1]).toMatch(/redis_version/);
    expect(r![1]![1]).toBe('1');
    expect(r![2]![1]).toMatch(/used_memory/);
    expect(r![2]![1]).toMatch(/db0:keys=4,/);
    expect(r![3]![1]).toMatch(/db0:keys=4,/);
    expect(r![4]![1]).toEqual(['maxmemory', '0']);
    c.disconnect();
    s.disconnect();
  });

  it('MONITOR streams what the target runs; a user denied MONITOR gets the target\'s NOPERM', async () => {
    const raw = await ctx.proxy.raw();
    raw.write('*1\r\n$7\r\nMONITOR\r\n');
    expect(parseReply(await raw.readReply())).toBe('OK');
    const c = ctx.proxy.client();
    await c.set('mon:key', 'v');
    let seen = '';
    await waitFor(async () => {
      seen += (await raw.readReply(2_000)).toString('latin1');
      return seen.includes('"mon:key"');
    }, 'MONITOR line for SET mon:key');
    raw.close();
    const direct = await limitedUser(['monitor']);
    const lim = ctx.proxy.client({ username: 'limited', password: 'pw' });
    expect(await errorOf(lim.call('MONITOR'))).toBe(await errorOf(direct.call('MONITOR')));
    expect(await lim.call('PING')).toBe('PONG');
    lim.disconnect();
    direct.disconnect();
    c.disconnect();
    await deleteUser();
  });
});

describe('MONITOR ends with its client', () => {
  useDefaultProxy();

  it('a MONITOR client that half-closes is let go at once, as Redis does', async () => {
    const raw = await ctx.proxy.raw();
    raw.write('*1\r\n$7\r\nMONITOR\r\n');
    expect(parseReply(await raw.readReply())).toBe('OK');
    const t = ctx.target.client();
    const monitors = async () => ((await t.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string).split('\n').filter((l) => / flags=O /.test(l)).length;
    await waitFor(async () => (await monitors()) === 1, 'MONITOR running on the new server');
    raw.end();
    expect(await raw.waitClosed(3_000)).toBe(true);
    await waitFor(async () => (await monitors()) === 0, 'MONITOR ended on the new server', 3_000);
    t.disconnect();
  });
});

describe('exact counts while the sweeper moves keys', () => {
  const sweeping = usePair({ autoProxy: false });
  it('DBSIZE and INFO keyspace never count a key twice', async () => {
    const s = connect(sweeping.source);
    const N = 30_000;
    for (let i = 0; i < N; i += 1000) {
      const args: string[] = [];
      for (let j = i; j < i + 1000; j++) args.push(`cnt:${j}`, 'v');
      await s.mset(...args);
    }
    const { startProxy } = await import('../helpers/proxy.js');
    const p = await startProxy({ source: sweeping.source, target: sweeping.target, sweep: true, args: ['--sweep-rate', '20000'] });
    try {
      const c = p.client();
      const wrong: number[] = [];
      let asked = 0;
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const n = await c.dbsize();
        const info = await c.info('keyspace');
        const m = /db0:keys=(\d+)/.exec(info);
        asked++;
        if (n !== N) wrong.push(n);
        if (!m || Number(m[1]) !== N) wrong.push(Number(m?.[1] ?? -1));
        if ((await s.dbsize()) === 0) break;
      }
      expect(asked).toBeGreaterThan(5);
      expect(wrong).toEqual([]);
      c.disconnect();
    } finally {
      await p.stop('SIGTERM', 3_000);
      s.disconnect();
    }
  });
});

describe('RESET keeps the connection fenced', () => {
  const startAdminProxy = useAdminProxies();

  it('the fenced name is set after RESET ran, so a switch kills the connection of a stopped process', async () => {
    const s = ctx.source.client();
    await s.set('r:a', 'old');
    const a = await startAdminProxy(ctx, ['--phase', 'migrate'], false);
    const b = await startAdminProxy(ctx, ['--phase', 'migrate'], false, true); // stopped (SIGSTOP) below
    const raw = await b.proxy.raw();
    // The SET waits for its key to move; the RESET queues behind it.
    raw.write('*3\r\n$3\r\nSET\r\n$3\r\nr:a\r\n$3\r\nnew\r\n*1\r\n$5\r\nRESET\r\n');
    expect((await raw.readReplies(2)).map((x) => parseReply(x))).toEqual(['OK', 'RESET']);
    const t = ctx.target.client();
    const me = String(await t.call('CLIENT', 'ID'));
    const unnamed = async () =>
      ((await t.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string)
        .split('\n')
        // (MIGRATE's cached connection from the old server is not rehome's: it has no name.)
        .filter((l) => / name= /.test(l) && !l.startsWith(`id=${me} `) && !/ cmd=restore/.test(l));
    await waitFor(async () => (await unnamed()).length === 0, 'every connection of rehome on the new server named', 3_000).catch(async (e: Error) => {
      throw new Error(`${e.message}: ${JSON.stringify(await unnamed())}`);
    });
    const clientConns = ((await t.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string)
      .split('\n')
      .filter((l) => / name=rehome-e1-client/.test(l))
      .map((l) => /^id=(\d+) /.exec(l)![1]!);
    expect(clientConns.length).toBeGreaterThan(0);
    b.proxy.proc.kill('SIGSTOP');
    try {
      const r = await runCli(['phase', 'reverse', '--admin', a.admin]);
      expect(r.code).toBe(0);
      // The client connections of epoch 1 are gone: the stopped process cannot write there.
      const ids = ((await t.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string)
        .split('\n')
        .map((l) => /^id=(\d+) /.exec(l)?.[1]);
      expect(clientConns.filter((id) => ids.includes(id))).toEqual([]);
    } finally {
      b.proxy.proc.kill('SIGCONT');
    }
    raw.close();
    t.disconnect();
    s.disconnect();
  });
});
