/**
 * The scope of a canary migration (docs/DESIGN.md "Scope"): key patterns and/or dbs. A key is in
 * scope when its db is one of the scope's dbs (or the scope names none) and it matches one of the
 * scope's patterns (or the scope names none). The empty scope is everything: today's full
 * migration.
 *
 * Patterns are globs as SCAN MATCH and KEYS take them, and a key must match here exactly when the
 * server's own SCAN MATCH would match it: the sweeper finds keys with SCAN MATCH while the gate
 * decides with `matchGlob`, and a key the two judge differently would be swept by one rule and
 * served by the other. So `matchGlob` follows the server's matcher byte for byte (bytes compared
 * as C's signed char inside `[a-z]` ranges, an unclosed `[` taken as closed at the pattern's end,
 * a trailing `\` matching itself); test/unit/scope.test.ts checks it against a real server.
 *
 * Keys are latin1 strings (one char per byte), as everywhere in the proxy.
 */
import { RehomeError } from '../errors.js';

/** Key patterns and dbs; both empty: every key of every db. */
export interface Scope {
  readonly patterns: readonly string[];
  readonly dbs: readonly number[];
}

export const EVERYTHING: Scope = { patterns: [], dbs: [] };

/** Whether a scope is the whole keyspace (no pattern, no db). */
export function isEverything(s: Scope): boolean {
  return s.patterns.length === 0 && s.dbs.length === 0;
}

/** One side of a key list: every key in scope, every key out, or keys on both sides. */
export type Side = 'in' | 'out' | 'both';

/** A key in a db. */
export interface ScopedKey {
  db: number;
  key: string;
}

/** The signed value of a byte, as C's `char` holds it on the platforms servers run on. */
function signed(c: number): number {
  return c >= 128 ? c - 256 : c;
}

/**
 * Whether `s` matches glob `p` exactly as the server's matcher does (`*`, `?`, `[...]` with `^`,
 * ranges and `\` escapes, `\` outside brackets). Case-sensitive, as SCAN MATCH is.
 */
export function matchGlob(p: string, s: string): boolean {
  // The server lists every key for a lone '*' without calling its matcher (which would refuse
  // the empty key).
  if (p === '*') return true;
  return matchFrom(p, 0, s, 0, { skipLonger: false }, 0);
}

function matchFrom(p: string, pi: number, s: string, si: number, st: { skipLonger: boolean }, nesting: number): boolean {
  // The server gives up past this depth of '*' (a guard against patterns that take forever).
  if (nesting > 1000) return false;
  const pn = p.length;
  const sn = s.length;
  while (pi < pn && si < sn) {
    const c = p.charCodeAt(pi);
    if (c === 0x2a /* * */) {
      while (pi + 1 < pn && p.charCodeAt(pi + 1) === 0x2a) pi++;
      if (pi + 1 === pn) return true;
      while (si < sn) {
        if (matchFrom(p, pi + 1, s, si, st, nesting + 1)) return true;
        if (st.skipLonger) return false;
        si++;
      }
      // No later start can match either: the caller's '*' need not try longer matches.
      st.skipLonger = true;
      return false;
    } else if (c === 0x3f /* ? */) {
      si++;
    } else if (c === 0x5b /* [ */) {
      pi++;
      const not = pi < pn && p.charCodeAt(pi) === 0x5e; /* ^ */
      if (not) pi++;
      let match = false;
      const sc = s.charCodeAt(si);
      for (;;) {
        if (pi < pn && p.charCodeAt(pi) === 0x5c /* \ */ && pn - pi >= 2) {
          pi++;
          if (p.charCodeAt(pi) === sc) match = true;
        } else if (pi < pn && p.charCodeAt(pi) === 0x5d /* ] */) {
          break;
        } else if (pi >= pn) {
          // Unclosed: the class ends with the pattern (the step below leaves pi at the end).
          pi--;
          break;
        } else if (pn - pi >= 3 && p.charCodeAt(pi + 1) === 0x2d /* - */) {
          let start = signed(p.charCodeAt(pi));
          let end = signed(p.charCodeAt(pi + 2));
          if (start > end) [start, end] = [end, start];
          const v = signed(sc);
          pi += 2;
          if (v >= start && v <= end) match = true;
        } else if (p.charCodeAt(pi) === sc) {
          match = true;
        }
        pi++;
      }
      if (not) match = !match;
      if (!match) return false;
      si++;
    } else {
      if (c === 0x5c /* \ */ && pn - pi >= 2) pi++;
      if (p.charCodeAt(pi) !== s.charCodeAt(si)) return false;
      si++;
    }
    pi++;
    if (si === sn) {
      while (pi < pn && p.charCodeAt(pi) === 0x2a) pi++;
      break;
    }
  }
  return pi >= pn && si === sn;
}

/** Whether a key of db `db` is in the scope. */
export function inScope(scope: Scope, db: number, key: string): boolean {
  if (scope.dbs.length > 0 && !scope.dbs.includes(db)) return false;
  if (scope.patterns.length === 0) return true;
  for (const p of scope.patterns) if (matchGlob(p, key)) return true;
  return false;
}

/**
 * Which side of the scope a command's keys are on; `pair` names one key in and one out when they
 * are on both sides (for the -CROSSSCOPE error). No keys: 'in' (nothing to route by).
 */
export function classify(scope: Scope, keys: readonly ScopedKey[]): { side: Side; pair: [ScopedKey, ScopedKey] | null } {
  let anIn: ScopedKey | null = null;
  let anOut: ScopedKey | null = null;
  for (const k of keys) {
    if (inScope(scope, k.db, k.key)) anIn ??= k;
    else anOut ??= k;
    if (anIn !== null && anOut !== null) return { side: 'both', pair: [anIn, anOut] };
  }
  return { side: anOut !== null ? 'out' : 'in', pair: null };
}

/** The scope as an operator reads it: `session:*, cart:* in db 0, 2`, or `everything`. */
export function describeScope(s: Scope): string {
  if (isEverything(s)) return 'everything';
  const pats = s.patterns.length > 0 ? s.patterns.join(', ') : '*';
  return s.dbs.length > 0 ? `${pats} in db ${s.dbs.join(', ')}` : pats;
}

/**
 * Builds a scope from the operator's flags (--scope, --scope-db): patterns deduplicated and
 * sorted, dbs checked against the server's count. Throws EBADSCOPE with the reason.
 */
export function parseScope(patterns: readonly string[], dbs: readonly string[], databases: number): Scope {
  for (const p of patterns) {
    if (p === '') throw new RehomeError('EBADSCOPE', 'a --scope pattern may not be empty');
    if (p.length > 1024) throw new RehomeError('EBADSCOPE', 'a --scope pattern may be at most 1024 bytes');
  }
  const nums: number[] = [];
  for (const d of dbs) {
    const n = /^\d+$/.test(d) ? Number(d) : NaN;
    if (!Number.isInteger(n) || n < 0 || n >= databases) {
      throw new RehomeError('EBADSCOPE', `--scope-db ${d} is not a db of this server (0 to ${databases - 1})`);
    }
    nums.push(n);
  }
  // A lone '*' is every key: the same scope as no pattern, stored one way.
  const pats = [...new Set(patterns)].filter((p) => p !== '*').sort();
  return { patterns: pats, dbs: [...new Set(nums)].sort((a, b) => a - b) };
}

/** The scope as stored in the phase record ('' for everything). */
export function encodeScope(s: Scope): string {
  return isEverything(s) ? '' : JSON.stringify({ patterns: s.patterns, dbs: s.dbs });
}

/** A stored scope; '' or absent is everything. Unreadable text is an error, never everything. */
export function decodeScope(text: string | null | undefined): Scope {
  if (!text) return EVERYTHING;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new RehomeError('EBADSCOPE', `the scope stored with the phase cannot be read: ${text.slice(0, 80)}`);
  }
  const o = v as { patterns?: unknown; dbs?: unknown };
  if (!Array.isArray(o.patterns) || !Array.isArray(o.dbs) || !o.patterns.every((p) => typeof p === 'string') || !o.dbs.every((d) => Number.isInteger(d))) {
    throw new RehomeError('EBADSCOPE', `the scope stored with the phase cannot be read: ${text.slice(0, 80)}`);
  }
  return { patterns: o.patterns as string[], dbs: o.dbs as number[] };
}

/** Whether two scopes are the same set of keys as stored (same patterns, same dbs). */
export function sameScope(a: Scope, b: Scope): boolean {
  return encodeScope(a) === encodeScope(b);
}

/**
 * Whether every key of `a` is a key of `b` as far as the stored form can tell (its dbs within
 * b's, each of its patterns one of b's): a switch from `a` to `b` only widens. A narrower or
 * different scope is treated as a narrowing (keys may come back).
 */
export function widens(a: Scope, b: Scope): boolean {
  if (isEverything(b)) return true;
  if (isEverything(a)) return false;
  const dbsOk = b.dbs.length === 0 || (a.dbs.length > 0 && a.dbs.every((d) => b.dbs.includes(d)));
  const patsOk = b.patterns.length === 0 || (a.patterns.length > 0 && a.patterns.every((p) => b.patterns.includes(p)));
  return dbsOk && patsOk;
}

/** The scope as the operator gave it (--scope, --scope-db), before parseScope checks it. */
export interface ScopeFlags {
  patterns: string[];
  dbs: string[];
}

export const NO_SCOPE_FLAGS: ScopeFlags = { patterns: [], dbs: [] };
