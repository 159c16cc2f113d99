/**
 * The known-absent cache: per db, at most maxPerDb keys in a table of 64-byte slots (keys of up to
 * INLINE bytes) and a Set (longer keys), CLOCK eviction. What must never happen: has() true for a
 * key that was not added (a key the source holds would be taken as absent and shadowed).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KnownAbsentCache } from '../../src/migration/absent-cache.js';
import { AbsentTable, INLINE } from '../../src/migration/absent-table.js';

describe('KnownAbsentCache', () => {
  it('keeps at most maxPerDb keys per db; a key asked for since the last eviction outlives one that was not', () => {
    const c = new KnownAbsentCache(3);
    for (const k of ['a', 'b', 'c']) c.add(0, k);
    expect(c.has(0, 'a')).toBe(true); // referenced
    c.add(0, 'd'); // full: the clock passes a (referenced: cleared) and evicts an unreferenced key
    expect(c.size).toBe(3);
    expect(c.has(0, 'a') && c.has(0, 'd')).toBe(true);
    expect(['b', 'c'].filter((k) => c.has(0, k))).toHaveLength(1);
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

  it('holds its full bound of a million keys, and keeps the newest when more come', () => {
    const c = new KnownAbsentCache(1_000_000);
    for (let i = 0; i < 1_000_050; i++) c.add(1, `k${i}`);
    expect(c.size).toBe(1_000_000);
    let kept = 0;
    for (let i = 0; i < 1_000_050; i++) if (c.has(1, `k${i}`)) kept++;
    expect(kept).toBe(1_000_000);
    expect(c.has(1, 'k1000049')).toBe(true);
  });
});

describe('AbsentTable', () => {
  it('tells apart keys that differ in one byte, in length, or only past INLINE bytes; binary and non-latin1 keys', () => {
    const t = new AbsentTable(1000);
    const base = 'x'.repeat(INLINE);
    const keys = ['', 'a', 'b', 'ab', 'ba', base, `${base}y`, `${base}z`, '\u0000\u00ff\r\n', '\u0100', '\u0101', 'key:000000000001'];
    for (const k of keys.filter((_, i) => i % 2 === 0)) t.add(k);
    for (const [i, k] of keys.entries()) expect(t.has(k), JSON.stringify(k)).toBe(i % 2 === 0);
    expect(t.has('x'.repeat(INLINE - 1))).toBe(false);
    expect(t.has('\u0000\u00ff\r')).toBe(false);
  });

  it('never says a key is known that was not added, and keeps the last key added (model check, small tables)', () => {
    // Few distinct keys and a small bound: many collisions in probe runs, evictions and
    // back-shifts of runs; long keys mixed in.
    const key = fc.oneof(
      fc.integer({ min: 0, max: 60 }).map((i) => `k${i}`),
      fc.integer({ min: 0, max: 20 }).map((i) => `${'L'.repeat(INLINE)}${i}`),
    );
    const op = fc.tuple(fc.constantFrom('add', 'has'), key);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.array(op, { maxLength: 400 }), (max, ops) => {
        const t = new AbsentTable(max);
        const added = new Set<string>();
        for (const [what, k] of ops) {
          if (what === 'add') {
            t.add(k);
            added.add(k);
            if (!t.has(k)) return false;
          } else if (t.has(k) && !added.has(k)) {
            return false;
          }
          if (t.size > max) return false;
        }
        // Whatever is counted is findable: every key it holds, it finds.
        let found = 0;
        for (const k of added) if (t.has(k)) found++;
        return found === t.size;
      }),
      { numRuns: 300 },
    );
  });

  it('evicts in linear time: 600,000 keys through a bound of 200,000, short and long', () => {
    const t = new AbsentTable(200_000);
    for (let i = 0; i < 600_000; i++) t.add(i % 4 === 0 ? `${'L'.repeat(INLINE)}${i}` : `k${i}`);
    expect(t.size).toBe(200_000);
    expect(t.has('k599999')).toBe(true);
  });
});
