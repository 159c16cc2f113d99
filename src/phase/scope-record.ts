/**
 * The scope as the phase record keeps it (the `__rehome:phase` hash, phase.ts):
 *
 *   scope           the scope in force (src/phase/scope.ts encodeScope; '' or absent: everything)
 *   returning       JSON list of scopes whose keys may still be on the new server although they
 *                   are out of scope now: they left it by a narrowing, and move back home with the
 *                   reverse mover (until the return sweep finds none, then the list is emptied)
 *   nextscope, nextreturning   while fencing: what the switch will set at its step 4
 *   scopedrained    the epoch at which a sweeper's whole pass found no key of the scope on the old
 *                   server (SCOPE_DRAINED_SCRIPT); every process of that epoch takes it
 *
 * Both change only at step 4 of a fenced switch (so no two processes route one key differently:
 * every connection of the epoch before is killed first), except that `returning` may be emptied
 * within an epoch once no key of it is on the new server: then routing a key by the return rules
 * or straight to the old server does the same thing (the key is not on the new server), so no
 * fence is needed, as for the end of a drain.
 */
import { decodeScope, EVERYTHING, isEverything, type Scope, sameScope, widens, encodeScope } from './scope.js';

export const SCOPE_FIELDS = ['scope', 'returning'] as const;

/**
 * Records that a canary's scope has drained at epoch ARGV[1], if the phase is still migrate at
 * that epoch. No process creates a key of the scope on the old server within the epoch, so it
 * stays drained for every process until the next switch, whose new epoch makes the mark stale.
 */
export const SCOPE_DRAINED_SCRIPT = `
local cur = redis.call('HMGET', KEYS[1], 'phase', 'epoch')
if cur[1] ~= 'migrate' or cur[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'scopedrained', ARGV[1])
return 1`;

/** The scope in force and the scopes whose keys are coming back. */
export interface ScopeRecord {
  scope: Scope;
  returning: Scope[];
}

export const NO_SCOPE: ScopeRecord = { scope: EVERYTHING, returning: [] };

/** The record from an HMGET of SCOPE_FIELDS. Unreadable text throws (never read as everything). */
export function parseScopeRecord(r: ReadonlyArray<string | null | undefined>): ScopeRecord {
  const [scope, returning] = r;
  let list: Scope[] = [];
  if (returning) {
    let v: unknown;
    try {
      v = JSON.parse(returning);
    } catch {
      v = null;
    }
    if (!Array.isArray(v)) return { scope: decodeScope(scope), returning: [EVERYTHING] };
    list = v.map((x) => decodeScope(JSON.stringify(x)));
  }
  return { scope: decodeScope(scope), returning: list };
}

export function encodeReturning(list: readonly Scope[]): string {
  return list.length === 0 ? '' : JSON.stringify(list.map((s) => ({ patterns: s.patterns, dbs: s.dbs })));
}

/**
 * What a switch to `to` with scope `want` stores, given what the fleet acted on before. Keys can
 * be on the new server only after migrate, drained or reverse (hold keeps it empty, a switch to
 * hold checks that): a switch that does not widen the scope adds the scope of before (everything,
 * after drained or reverse) to the returning list. A switch to hold or reverse, or to migrate with
 * no scope, has nothing returning: the reverse mover, or the forward one, owns every key.
 */
export function nextScopeRecord(prevPhase: string | null, prev: ScopeRecord, to: string, want: Scope): ScopeRecord {
  if (to !== 'migrate' || isEverything(want)) return NO_SCOPE;
  if (prevPhase === 'hold' || prevPhase === null) return { scope: want, returning: [] };
  const before = prevPhase === 'migrate' ? prev.scope : EVERYTHING;
  const carried = prevPhase === 'migrate' ? prev.returning : [];
  if (widens(before, want)) return { scope: want, returning: [...carried] };
  const list = carried.some((s) => sameScope(s, before)) ? [...carried] : [...carried, before];
  // Everything coming back covers the rest.
  return { scope: want, returning: list.some(isEverything) ? [EVERYTHING] : list };
}

/** HSET field/value pairs for the fields a switch sets at step 4. */
export function nextFields(r: ScopeRecord): string[] {
  return ['nextscope', encodeScope(r.scope), 'nextreturning', encodeReturning(r.returning)];
}
