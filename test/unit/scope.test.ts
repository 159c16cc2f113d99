/**
 * The scope (src/phase/scope.ts): glob matching must agree with the server's own SCAN MATCH
 * key for key (the sweeper finds keys with it, the gate decides with matchGlob), so the oracle is
 * a real redis-server: for each pattern, the keys SCAN MATCH returns are exactly the keys
 * matchGlob accepts.
 */
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  classify, decodeScope, describeScope, encodeScope, EVERYTHING, inScope, matchGlob, parseScope, widens,
} from '../../src/phase/scope.js';
import { nextScopeRecord, NO_SCOPE, parseScopeRecord, encodeReturning } from '../../src/phase/scope-record.js';
import { type RedisServer, startRedis, stopAll } from '../helpers/redis.js';

/** Keys and patterns over a small alphabet, so that patterns often match. */
const ALPHABET = ['a', 'b', 'c', ':', '-', '*', '?', '[', ']', '^', '\\', 'é', '\x00', '\xff'];
const keyArb = fc.array(fc.constantFrom(...ALPHABET.filter((c) => c !== '*')), { maxLength: 6 }).map((a) => a.join(''));
const patArb = fc.array(fc.constantFrom(...ALPHABET, 'a-c', '[a-c]', '[^b]', '\\*', '[\\]]'), { minLength: 1, maxLength: 6 }).map((a) => a.join(''));

/** The keys SCAN MATCH returns for a pattern (latin1, as the proxy holds them). */
async function scanMatch(c: Redis, pattern: string): Promise<Set<string>> {
  const out = new Set<string>();
  let cursor = '0';
  do {
    const [next, keys] = (await c.callBuffer('SCAN', cursor, 'MATCH', Buffer.from(pattern, 'latin1'), 'COUNT', '1000')) as [Buffer, Buffer[]];
    for (const k of keys) out.add(k.toString('latin1'));
    cursor = String(next);
  } while (cursor !== '0');
  return out;
}

describe('matchGlob against the server', () => {
  let server: RedisServer;
  let c: Redis;
  beforeAll(async () => {
    server = await startRedis();
    c = server.client();
  });
  afterAll(() => stopAll(server));

  it('odd globs match what SCAN MATCH returns', async () => {
    const keys = ['a', 'b', 'c', 'd', '*', 'a*', 'a?', '[', ']', '\\', '-', 'ab', 'abc', 'x:1', 'x:12', 'x', '', 'é', '\xff', 'a-c', '^'];
    await c.flushall();
    for (const k of keys) await c.set(Buffer.from(k, 'latin1'), '1');
    const patterns = ['[a-c]', '[c-a]', '\\*', 'a\\*', '?', 'a?', '[^a]', '[^a-c]', '[', '[a', 'a[', '\\', 'a\\', '[\\]]', '[]]', '[a-]',
      'x:*', 'x:?', '*:*', '**', '*a*', '[-]', '[\\-]', '[\x00-\xff]', '[a-\xff]', '[\xff-a]', 'x:1*', '*c', '^', '[\\'];
    for (const p of patterns) {
      const want = await scanMatch(c, p);
      const got = new Set(keys.filter((k) => matchGlob(p, k)));
      expect([...got].sort(), `pattern ${JSON.stringify(p)}`).toEqual([...want].sort());
    }
  });

  it('random keys and patterns: matchGlob agrees with SCAN MATCH', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(keyArb, { minLength: 1, maxLength: 12 }), patArb, async (keys, p) => {
        await c.flushall();
        const m = c.multi();
        for (const k of keys) m.set(Buffer.from(k, 'latin1'), '1');
        await m.exec();
        const want = await scanMatch(c, p);
        const got = new Set(keys.filter((k) => matchGlob(p, k)));
        expect([...got].sort(), `pattern ${JSON.stringify(p)}`).toEqual([...want].sort());
      }),
      { numRuns: 300 },
    );
  });
});

describe('scopes', () => {
  const s = parseScope(['session:*', 'cart:*', 'session:*'], ['2', '0'], 16);

  it('parses flags: patterns deduplicated and sorted, dbs checked', () => {
    expect(s).toEqual({ patterns: ['cart:*', 'session:*'], dbs: [0, 2] });
    expect(parseScope(['*'], [], 16)).toEqual(EVERYTHING);
    expect(() => parseScope([''], [], 16)).toThrow(/may not be empty/);
    expect(() => parseScope([], ['16'], 16)).toThrow(/not a db of this server/);
    expect(() => parseScope([], ['-1'], 16)).toThrow(/not a db/);
    expect(() => parseScope([], ['1x'], 16)).toThrow(/not a db/);
  });

  it('a key is in scope by its db and its name', () => {
    expect(inScope(s, 0, 'session:1')).toBe(true);
    expect(inScope(s, 2, 'cart:9')).toBe(true);
    expect(inScope(s, 1, 'session:1')).toBe(false);
    expect(inScope(s, 0, 'user:1')).toBe(false);
    expect(inScope(EVERYTHING, 7, 'anything')).toBe(true);
    const dbOnly = parseScope([], ['3'], 16);
    expect(inScope(dbOnly, 3, 'x')).toBe(true);
    expect(inScope(dbOnly, 0, 'x')).toBe(false);
  });

  it('classifies a command\'s keys: in, out, or both (naming one of each)', () => {
    expect(classify(s, [{ db: 0, key: 'session:1' }, { db: 0, key: 'cart:2' }]).side).toBe('in');
    expect(classify(s, [{ db: 0, key: 'a' }, { db: 1, key: 'session:1' }]).side).toBe('out');
    const both = classify(s, [{ db: 0, key: 'a' }, { db: 0, key: 'b' }, { db: 0, key: 'session:1' }]);
    expect(both.side).toBe('both');
    expect(both.pair).toEqual([{ db: 0, key: 'session:1' }, { db: 0, key: 'a' }]);
    expect(classify(s, []).side).toBe('in');
  });

  it('round-trips through the phase record; unreadable text is an error, not everything', () => {
    expect(decodeScope(encodeScope(s))).toEqual(s);
    expect(encodeScope(EVERYTHING)).toBe('');
    expect(decodeScope('')).toEqual(EVERYTHING);
    expect(() => decodeScope('{"patterns":3}')).toThrow(/cannot be read/);
    expect(() => decodeScope('nope')).toThrow(/cannot be read/);
    expect(describeScope(s)).toBe('cart:*, session:* in db 0, 2');
    expect(describeScope(EVERYTHING)).toBe('everything');
  });

  it('tells a widening from a narrowing', () => {
    const one = parseScope(['session:*'], [], 16);
    const two = parseScope(['session:*', 'cart:*'], [], 16);
    expect(widens(one, two)).toBe(true);
    expect(widens(two, one)).toBe(false);
    expect(widens(two, EVERYTHING)).toBe(true);
    expect(widens(EVERYTHING, one)).toBe(false);
    expect(widens(parseScope(['a*'], ['1'], 16), parseScope(['a*'], [], 16))).toBe(true);
    expect(widens(parseScope(['a*'], [], 16), parseScope(['a*'], ['1'], 16))).toBe(false);
  });
});

describe('the scope a switch stores (scope-record.ts)', () => {
  const a = parseScope(['a:*'], [], 16);
  const ab = parseScope(['a:*', 'b:*'], [], 16);

  it('from hold: the scope, nothing returning (the new server is empty)', () => {
    expect(nextScopeRecord('hold', NO_SCOPE, 'migrate', a)).toEqual({ scope: a, returning: [] });
  });

  it('widening keeps what is returning; narrowing adds the scope of before', () => {
    const wide = nextScopeRecord('migrate', { scope: a, returning: [] }, 'migrate', ab);
    expect(wide).toEqual({ scope: ab, returning: [] });
    const narrow = nextScopeRecord('migrate', wide, 'migrate', a);
    expect(narrow).toEqual({ scope: a, returning: [ab] });
    // Narrowing again while keys come back: both scopes of before are returning.
    const b = parseScope(['b:*'], [], 16);
    expect(nextScopeRecord('migrate', narrow, 'migrate', b)).toEqual({ scope: b, returning: [ab, a] });
  });

  it('after drained or reverse every key may be on the new server: everything returns', () => {
    expect(nextScopeRecord('drained', NO_SCOPE, 'migrate', a)).toEqual({ scope: a, returning: [EVERYTHING] });
    expect(nextScopeRecord('reverse', NO_SCOPE, 'migrate', a)).toEqual({ scope: a, returning: [EVERYTHING] });
    // A full migrate narrowed to a slice: the same.
    expect(nextScopeRecord('migrate', NO_SCOPE, 'migrate', a)).toEqual({ scope: a, returning: [EVERYTHING] });
  });

  it('hold, reverse and a migrate without scope clear it', () => {
    const cur = { scope: a, returning: [ab] };
    expect(nextScopeRecord('migrate', cur, 'hold', EVERYTHING)).toEqual(NO_SCOPE);
    expect(nextScopeRecord('migrate', cur, 'reverse', EVERYTHING)).toEqual(NO_SCOPE);
    expect(nextScopeRecord('migrate', cur, 'migrate', EVERYTHING)).toEqual(NO_SCOPE);
  });

  it('round-trips the returning list; an unreadable one is read as everything returning', () => {
    const r = { scope: a, returning: [ab, a] };
    expect(parseScopeRecord([encodeScope(a), encodeReturning(r.returning)])).toEqual(r);
    expect(parseScopeRecord([encodeScope(a), 'garbage'])).toEqual({ scope: a, returning: [EVERYTHING] });
  });
});
