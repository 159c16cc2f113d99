/**
 * The known-absent cache: a bounded LRU per db (the bound is a count of keys).
 */
import { describe, expect, it } from 'vitest';
import { KnownAbsentCache } from '../../src/migration/absent-cache.js';

describe('KnownAbsentCache', () => {
  it('keeps at most maxPerDb keys per db, dropping the least recently used', () => {
    const c = new KnownAbsentCache(3);
    for (const k of ['a', 'b', 'c']) c.add(0, k);
    expect(c.has(0, 'a')).toBe(true); // a is now the most recently used
    c.add(0, 'd');
    c.add(0, 'e');
    expect(['a', 'b', 'c', 'd', 'e'].filter((k) => c.has(0, k))).toEqual(['a', 'd', 'e']);
    expect(c.size).toBe(3);
    c.add(0, 'a'); // already known: no growth
    expect(c.size).toBe(3);
  });

  it('counts each db separately; clear forgets everything', () => {
    const c = new KnownAbsentCache(2);
    c.add(0, 'x');
    c.add(5, 'y');
    c.add(5, 'z');
    expect(c.has(0, 'y')).toBe(false);
    expect(c.has(5, 'y') && c.has(5, 'z') && c.has(0, 'x')).toBe(true);
    expect(c.size).toBe(3);
    c.clear();
    expect(c.size).toBe(0);
    expect(c.has(0, 'y')).toBe(false);
  });

  it('with maxPerDb 0 remembers nothing', () => {
    const c = new KnownAbsentCache(0);
    c.add(0, 'a');
    expect(c.has(0, 'a')).toBe(false);
    expect(c.size).toBe(0);
  });

  it('holds its full bound of a million keys', () => {
    const c = new KnownAbsentCache(1_000_000);
    for (let i = 0; i < 1_000_050; i++) c.add(1, `k${i}`);
    expect(c.size).toBe(1_000_000);
    expect(c.has(1, 'k49')).toBe(false);
    expect(c.has(1, 'k50')).toBe(true);
    expect(c.has(1, 'k1000049')).toBe(true);
  });
});
