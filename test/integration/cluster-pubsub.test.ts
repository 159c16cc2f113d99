/**
 * Pub/sub and MONITOR through rehome with a cluster as the new server: a subscriber gets what is
 * published through rehome and straight on any node (a cluster carries PUBLISH to every node);
 * after unsubscribing, its connection routes keys to every master again; SSUBSCRIBE follows its
 * channel's slot; MONITOR shows the commands of every master, and RESET ends it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { keySlot } from '../../src/cluster/slot.js';
import { startCluster, type TestCluster } from '../helpers/cluster.js';
import { startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { parseReply } from '../helpers/resp.js';
import { type RedisServer, startRedis, stopAll } from '../helpers/redis.js';

let cl: TestCluster;
let source: RedisServer;
let proxy: ProxyHandle;
/** One key served by each master, in master order. */
let keyOn: string[] = [];

beforeAll(async () => {
  [cl, source] = await Promise.all([startCluster(), startRedis()]);
  proxy = await startProxy({ source, target: cl.url });
  const owners: Array<Set<number>> = [];
  for (const m of cl.masters) {
    const c = m.client();
    const ranges = (await c.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
    c.disconnect();
    const mine = new Set<number>();
    for (const [lo, hi, o] of ranges) if (o[1] === m.port) for (let s = lo; s <= hi; s++) mine.add(s);
    owners.push(mine);
  }
  keyOn = owners.map((mine) => {
    for (let i = 0; ; i++) if (mine.has(keySlot(`k${i}`))) return `k${i}`;
  });
}, 90_000);
afterAll(async () => {
  await proxy?.stop();
  await cl?.stop();
  await stopAll(source);
});
afterEach(async () => {
  const c = proxy.client();
  await c.flushall();
  c.disconnect();
});

describe('pub/sub and MONITOR with a cluster as the new server', () => {
  it('PUBLISH through rehome and on any node reaches a subscriber through rehome', async () => {
    const sub = await proxy.raw();
    expect(parseReply(await sub.command('SUBSCRIBE', 'news'))).toEqual(['subscribe', 'news', 1]);
    const pub = proxy.client();
    expect(await pub.publish('news', 'through rehome')).toBeGreaterThanOrEqual(1);
    expect(parseReply(await sub.readReply())).toEqual(['message', 'news', 'through rehome']);
    const far = cl.masters[2]!.client();
    await far.publish('news', 'on the third master');
    far.disconnect();
    expect(parseReply(await sub.readReply())).toEqual(['message', 'news', 'on the third master']);
    sub.close();
  });

  it('while subscribed other commands get the server\'s error; after UNSUBSCRIBE keys route to every master again', async () => {
    const c = proxy.client();
    for (const k of keyOn) await c.set(k, `v-${k}`);
    const sub = await proxy.raw();
    expect(parseReply(await sub.command('SUBSCRIBE', 'a'))).toEqual(['subscribe', 'a', 1]);
    expect((await sub.command('GET', keyOn[1]!)).toString()).toMatch(/^-ERR Can't execute 'get': only \(P\|S\)SUBSCRIBE/);
    expect(parseReply(await sub.command('PSUBSCRIBE', 'b*'))).toEqual(['psubscribe', 'b*', 2]);
    expect(parseReply(await sub.command('UNSUBSCRIBE'))).toEqual(['unsubscribe', 'a', 1]);
    expect(parseReply(await sub.command('PUNSUBSCRIBE'))).toEqual(['punsubscribe', 'b*', 0]);
    for (const k of keyOn) expect((await sub.command('GET', k)).toString()).toBe(`$${k.length + 2}\r\nv-${k}\r\n`);
    expect((await sub.command('SET', keyOn[2]!, 'after')).toString()).toBe('+OK\r\n');
    expect(await c.get(keyOn[2]!)).toBe('after');
    sub.close();
  });

  it('SSUBSCRIBE listens on its channel\'s master; SPUBLISH through rehome reaches it', async () => {
    const sub = await proxy.raw();
    expect(parseReply(await sub.command('SSUBSCRIBE', keyOn[1]!))).toEqual(['ssubscribe', keyOn[1]!, 1]);
    const pub = await proxy.raw();
    expect(parseReply(await pub.command('SPUBLISH', keyOn[1]!, 'sharded'))).toBe(1);
    expect(parseReply(await sub.readReply())).toEqual(['smessage', keyOn[1]!, 'sharded']);
    // A shard channel of another master on the same connection: a clear error, the first stays.
    expect((await sub.command('SSUBSCRIBE', keyOn[2]!)).toString()).toMatch(/^-ERR rehome: SSUBSCRIBE to a shard channel of another cluster master/);
    expect(parseReply(await sub.command('SUNSUBSCRIBE'))).toEqual(['sunsubscribe', keyOn[1]!, 0]);
    expect((await sub.command('GET', keyOn[0]!)).toString()).toBe('$-1\r\n');
    sub.close();
    pub.close();
  });

  it('MONITOR shows the commands of every master; RESET ends it and the connection routes again', async () => {
    const mon = await proxy.raw();
    expect((await mon.command('MONITOR')).toString()).toBe('+OK\r\n');
    const c = proxy.client();
    for (const k of keyOn) await c.set(k, 'watched');
    const seen = new Set<string>();
    while (seen.size < keyOn.length) {
      const line = (await mon.readReply()).toString();
      expect(line).toMatch(/^\+\d+\.\d+ \[/);
      for (const k of keyOn) if (line.toLowerCase().includes(`"set" "${k}" "watched"`)) seen.add(k);
    }
    expect((await mon.command('RESET')).toString()).toBe('+RESET\r\n');
    for (const k of keyOn) expect((await mon.command('GET', k)).toString()).toBe('$7\r\nwatched\r\n');
    mon.close();
  });
});
