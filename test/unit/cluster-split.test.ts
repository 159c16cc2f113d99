/**
 * Slots (hash tags as Redis Cluster defines them) and the split/merge of multi-key commands
 * across slots (src/cluster/slot.ts, split.ts), without sockets.
 */
import { describe, expect, it } from 'vitest';
import { commonSlot, keySlot } from '../../src/cluster/slot.js';
import { mergeReplies, splitBySlot } from '../../src/cluster/split.js';
import { encodeRequest } from '../../src/resp/request-framer.js';

describe('key slots', () => {
  it('match Redis Cluster: CRC16/XMODEM mod 16384, the first non-empty {tag}', () => {
    expect(keySlot('123456789')).toBe(0x31c3 % 16384); // the CRC16/XMODEM check value
    expect(keySlot('foo')).toBe(12182); // CLUSTER KEYSLOT foo
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
    // CLUSTER KEYSLOT of Redis 7.0 for each (the hash tag examples of the cluster spec).
    expect(keySlot('foo{}{bar}')).toBe(8363); // the first {} is empty: the whole key
    expect(keySlot('foo{{bar}}zap')).toBe(4015); // the tag is '{bar'
    expect(keySlot('{bar')).toBe(4015);
    expect(keySlot('foo{bar}{zap}')).toBe(5061); // the first tag only
    expect(keySlot('bar')).toBe(5061);
    expect(keySlot('\xff\x00k')).toBeGreaterThanOrEqual(0); // binary keys as latin1 strings
  });

  it('commonSlot: one slot, -1 across slots, -2 for no keys', () => {
    expect(commonSlot(['{a}1', '{a}2'])).toBe(keySlot('a'));
    expect(commonSlot(['a', 'b'])).toBe(-1);
    expect(commonSlot([])).toBe(-2);
  });
});

describe('split and merge', () => {
  const req = (...args: string[]) => encodeRequest(args);

  it('MGET: one part per slot, the replies put back in the original order', () => {
    const parts = splitBySlot(req('MGET', 'a', 'b', '{a}x', 'a'), 1);
    expect(parts.length).toBe(2);
    const replies = parts.map((p) => {
      const vals = p.at.map((k) => ['va', 'vb', 'vx', 'va'][k]!);
      return Buffer.from(`*${vals.length}\r\n${vals.map((v) => `$${v.length}\r\n${v}\r\n`).join('')}`);
    });
    expect(mergeReplies('mget', parts, replies).toString()).toBe('*4\r\n$2\r\nva\r\n$2\r\nvb\r\n$2\r\nvx\r\n$2\r\nva\r\n');
  });

  it('MSET keeps each key with its value; DEL/EXISTS sum; the first error wins', () => {
    const parts = splitBySlot(req('MSET', 'a', '1', 'b', '2'), 2);
    expect(parts.map((p) => p.bytes.toString()).sort()).toEqual(['*3\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n', '*3\r\n$4\r\nMSET\r\n$1\r\nb\r\n$1\r\n2\r\n']);
    const ok = Buffer.from('+OK\r\n');
    expect(mergeReplies('mset', parts, [ok, ok]).toString()).toBe('+OK\r\n');
    const err = Buffer.from('-OOM command not allowed\r\n');
    expect(mergeReplies('mset', parts, [ok, err]).toString()).toBe(err.toString());
    expect(mergeReplies('del', parts, [Buffer.from(':1\r\n'), Buffer.from(':2\r\n')]).toString()).toBe(':3\r\n');
  });
});
