/**
 * The proxy-side move's steps on real servers (docs/DESIGN.md "Moves"): a mover is driven step by
 * step through the scripts, stalled between steps at will, while another mover (ProxyMove) and a
 * client act. Each case is one the model checker found as a hole in a weaker protocol.
 */
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { usePair } from '../helpers/fixture.js';
import { sleep } from '../helpers/util.js';
import { moveKeys, stagingKeys } from '../../src/migration/move-keys.js';
import {
  CLAIM_SCRIPT, PUBLISH_DUMP_SCRIPT, PUBLISH_STAGED_SCRIPT, RELEASE_SCRIPT, STAGE_SCRIPT,
} from '../../src/migration/move-scripts.js';
import { PROXY_MOVE_DEFAULTS, ProxyMove } from '../../src/migration/proxy-move.js';
import { ControlPool } from '../../src/upstream/control.js';
import { parseRedisUrl } from '../../src/upstream/endpoint.js';

const LEASE = 300;
const K = Buffer.from('k');
const N = moveKeys(K);

describe('the proxy-side move, step by step', () => {
  const ctx = usePair({ autoProxy: false });
  let s: Redis;
  let t: Redis;
  let pools: ControlPool[] = [];
  beforeEach(() => {
    s = ctx.source.client(0);
    t = ctx.target.client(0);
  });
  afterEach(async () => {
    await Promise.all(pools.map((p) => p.close()));
    pools = [];
  });

  function mover(owner: string, lateWindowMs = 60_000): ProxyMove {
    const opts = { commandTimeoutMs: 5_000, connectTimeoutMs: 2_000 };
    const src = new ControlPool(parseRedisUrl('source', ctx.source.url), opts, 'source');
    const tgt = new ControlPool(parseRedisUrl('target', ctx.target.url), opts, 'target');
    pools.push(src, tgt);
    return new ProxyMove(src, tgt, {
      ...PROXY_MOVE_DEFAULTS, method: 'dump', owner, leaseMs: LEASE, bigKeyBytes: 1 << 20, lateWindowMs, target: { hashFieldTtl: false, xsetidEntriesAdded: true, xgroupEntriesRead: true },
    });
  }

  /** Step 1 as mover `owner`: {status, token, deadline, owner, lease, payload}. */
  async function claim(owner: string): Promise<[string, string, string, string, number, Buffer | null]> {
    const r = (await s.callBuffer('EVAL', CLAIM_SCRIPT, 3, N.key, N.claim, N.record, owner, String(LEASE), String(1 << 20))) as unknown[][];
    const [st, tok, d, o, l, p] = r[0]! as [Buffer, Buffer, Buffer, Buffer, number, Buffer | null];
    return [st.toString(), tok.toString(), d.toString(), o.toString(), Number(l), p];
  }

  async function publishDump(payload: Buffer, deadline: string, leaseEnd: number, window = 60_000): Promise<string> {
    const r = (await t.callBuffer('EVAL', PUBLISH_DUMP_SCRIPT, 2, N.key, N.marker, String(window), payload, deadline, String(leaseEnd))) as Buffer[];
    return r[0]!.toString();
  }

  it('claim: K becomes its claim key (TTL kept as a deadline), the gate sees it as present, a second mover is told HELD', async () => {
    await s.set(K, 'v', 'PX', 60_000);
    const want = Number(await s.call('PEXPIRETIME', K));
    const [st, tok, deadline] = await claim('A');
    expect(st).toBe('CLAIMED');
    expect(Number(deadline)).toBe(want);
    expect(await s.exists(K)).toBe(0);
    expect(await s.pttl(N.claim)).toBe(-1); // the claim key never expires under the mover
    expect(await s.exists(K, N.claim)).toBe(1);
    expect((await claim('B'))[0]).toBe('HELD');
    expect(await s.hget(N.record, 't')).toBe(tok);
  });

  it('a mover stalled past its lease cannot publish after a takeover and a delete, nor release', async () => {
    await s.set(K, 'v');
    const [, tokA, dA, , leaseA, payloadA] = await claim('A');
    await sleep(LEASE + 50); // A stalls past its lease
    const b = mover('B');
    const r = await b.move(0, [K]);
    expect(r.fails.size).toBe(0);
    expect(r.moved).toBe(1);
    expect(b.takeovers).toBe(1);
    expect(await t.get(K)).toBe('v');
    await t.del(K); // a client deletes the moved key
    // A wakes up: its publish is refused (the marker), and its token no longer owns anything.
    expect(await publishDump(payloadA!, dA, leaseA)).toBe('MARKED');
    expect(await t.exists(K)).toBe(0);
    expect(await s.eval(RELEASE_SCRIPT, 2, N.claim, N.record, tokA)).toBe(0);
  });

  it('two takers of one lapsed claim: one wins, the other is told HELD', async () => {
    await s.set(K, 'v');
    await claim('A');
    await sleep(LEASE + 50);
    const [b] = await claim('B');
    const [c] = await claim('C');
    expect([b, c]).toEqual(['TAKEN', 'HELD']);
  });

  it("a mover's own earlier claim is taken over at once, with a higher token", async () => {
    await s.set(K, 'v');
    const [, t1] = await claim('A');
    const [st, t2] = await claim('A');
    expect(st).toBe('TAKEN');
    expect(BigInt(t2)).toBeGreaterThan(BigInt(t1));
  });

  it('staging: chunk i only where staging holds i chunks; an incomplete staging is never published and is dropped', async () => {
    const { staging, count } = stagingKeys(K, '7');
    const stage = (i: number, v: string) => t.call('EVAL', STAGE_SCRIPT, 2, staging, count, String(i), '60000', 'APPEND', '1', v) as Promise<[string, number]>;
    expect((await stage(0, 'a'))[0]).toBe('OK');
    expect(await stage(0, 'a')).toEqual(['SKEW', 1]); // a repeated chunk 0 (another attempt) is refused
    expect(await stage(2, 'c')).toEqual(['SKEW', 1]);
    expect(await t.get(staging)).toBe('a');
    expect(await t.pttl(staging)).toBeGreaterThan(0); // garbage-collected if abandoned
    const out = await t.eval(PUBLISH_STAGED_SCRIPT, 4, K, N.marker, staging, count, '2', '-1', String(Date.now() + 10_000), '60000');
    expect(out).toBe('FAIL staging incomplete');
    expect(await t.exists(K, staging, count, N.marker)).toBe(0);
  });

  it('publish: the target copy wins (EXISTS); a passed deadline publishes nothing (EXPIRED); a lease older than the window is LATE', async () => {
    await s.set(K, 'old');
    const [, , d, , l, p] = await claim('A');
    await t.set(K, 'newer');
    expect(await publishDump(p!, d, l)).toBe('EXISTS');
    expect(await t.get(K)).toBe('newer');
    await t.del(K);
    expect(await publishDump(p!, String(Date.now() - 1), l)).toBe('EXPIRED');
    expect(await t.exists(K)).toBe(0);
    await t.del(N.marker);
    expect(await publishDump(p!, d, Date.now() - 100, 50)).toBe('LATE');
    expect(await publishDump(p!, d, l)).toBe('OK');
    expect(await t.get(K)).toBe('old');
    expect(await t.pttl(K)).toBe(-1);
  });

  it("claim, record, marker and staging keys hash to K's cluster slot where K allows it", () => {
    for (const k of ['k', '{user1}:x', 'a{b}c', 'x{', Buffer.from([0xff, 0x7b, 0x61, 0x7d])]) {
      const kb = Buffer.isBuffer(k) ? k : Buffer.from(k);
      const m = moveKeys(kb);
      const st = stagingKeys(kb, '123');
      for (const n of [m.claim, m.record, m.marker, st.staging, st.count]) expect(keySlot(n), `${kb.toString('latin1')} -> ${n.toString('latin1')}`).toBe(keySlot(kb));
    }
    // The case no name can follow: no hash tag, and a '}' in K (docs/DESIGN.md says so).
    for (const k of ['x}', '{}x', '{}{a}']) expect(keySlot(moveKeys(Buffer.from(k)).claim)).not.toBe(keySlot(Buffer.from(k)));
  });
});

/** Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag or of all of it, mod 16384. */
function keySlot(k: Buffer): number {
  let part = k;
  const open = k.indexOf(0x7b);
  if (open >= 0) {
    const close = k.indexOf(0x7d, open + 1);
    if (close > open + 1) part = k.subarray(open + 1, close);
  }
  let crc = 0;
  for (const b of part) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
