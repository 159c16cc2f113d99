/**
 * The phase record on the old server (`__rehome:phase`, a hash; phase.ts has the fields and the
 * switch): its names, its parsing, the scripts that change it, and the names of fenced
 * connections with the kill of older epochs' (step 2 of a switch). PhaseController
 * (phase.ts) is the one that runs them.
 */
import type { Redis } from 'ioredis';
import { NO_SCOPE, parseScopeRecord, type ScopeRecord } from './scope-record.js';

/** The reserved key; every key starting with RESERVED_PREFIX is hidden and never moved. */
export const PHASE_KEY = '__rehome:phase';
/** A switch publishes its new epoch here, so processes read the phase at once (not at the next poll). */
export const PHASE_CHANNEL = '__rehome:phase';
export const RESERVED_PREFIX = '__rehome:';

export type PhaseName = 'hold' | 'migrate' | 'drained' | 'reverse' | 'fencing';
/** Phases an operator can switch to. */
export type SwitchablePhase = 'hold' | 'migrate' | 'reverse';
export const SWITCHABLE: readonly SwitchablePhase[] = ['hold', 'migrate', 'reverse'];

export interface PhaseState {
  phase: PhaseName;
  epoch: number;
  next: PhaseName | null;
  /** While fencing: the phase the fleet last acted on; null when not recorded. */
  prev: PhaseName | null;
  since: number;
  by: string;
  /** The canary's scope in force and the scopes whose keys are coming back (scope-record.ts). */
  scope: ScopeRecord;
  /** The epoch at which a sweeper found the scope drained (0: none; scope-record.ts). */
  scopeDrained: number;
}

export function isReserved(key: string): boolean {
  return key.startsWith(RESERVED_PREFIX);
}

/** A connection name for an epoch: `rehome-e<epoch>-<role>`. */
export function fencedName(epoch: number, role: string): string {
  return `rehome-e${epoch}-${role}`;
}

/** The epoch a connection name is fenced for, or null for names rehome does not fence. */
export function epochOfName(name: string): number | null {
  const m = /^rehome-e(\d+)(?:[-.]|$)/.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * Creates the phase hash (ARGV: phase, since, by, epoch) if it has no phase (it may hold only a
 * process report, written after a deletion). Returns the phase as stored afterwards.
 */
export const INIT_SCRIPT = `
if redis.call('HEXISTS', KEYS[1], 'phase') == 0 then
  redis.call('HSET', KEYS[1], 'phase', ARGV[1], 'epoch', ARGV[4], 'next', '', 'since', ARGV[2], 'by', ARGV[3])
end
return redis.call('HMGET', KEYS[1], 'phase', 'epoch', 'next', 'since', 'by', 'prev', 'scope', 'returning', 'scopedrained')`;

/**
 * Step 1: fencing with epoch+1, only if the epoch is still ARGV[1]. Returns the new epoch and
 * the phase the fleet last acted on ('' if unknown): when a switch died while fencing, the
 * phase of before it, which no process has stopped acting on since.
 */
export const BEGIN_SCRIPT = `
local cur = redis.call('HMGET', KEYS[1], 'phase', 'epoch', 'prev')
if cur[2] ~= ARGV[1] then return redis.error_reply('ESTALE the phase changed meanwhile (epoch ' .. tostring(cur[2]) .. ')') end
local e = tonumber(ARGV[1]) + 1
local prev = cur[1]
if not prev or prev == 'fencing' then prev = cur[3] or '' end
redis.call('HSET', KEYS[1], 'phase', 'fencing', 'epoch', tostring(e), 'next', ARGV[2], 'prev', prev, 'since', ARGV[3], 'by', ARGV[4],
  'nextscope', ARGV[5] or '', 'nextreturning', ARGV[6] or '')
return {e, prev}`;

/**
 * Step 4, the restore of an abandoned switch, and the drained marks: set ARGV[3] if the phase
 * is still ARGV[2] at epoch ARGV[1]. With ARGV[6] '1' (step 4 only), the scope the switch
 * carried (nextscope, nextreturning) comes into force with the phase; an abandoned switch drops it.
 */
export const SET_SCRIPT = `
local cur = redis.call('HMGET', KEYS[1], 'phase', 'epoch', 'nextscope', 'nextreturning')
if cur[2] ~= ARGV[1] or cur[1] ~= ARGV[2] then
  return redis.error_reply('ESTALE the phase is ' .. tostring(cur[1]) .. ' at epoch ' .. tostring(cur[2]))
end
redis.call('HSET', KEYS[1], 'phase', ARGV[3], 'next', '', 'since', ARGV[4], 'by', ARGV[5])
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'scope', cur[3] or '', 'returning', cur[4] or '') end
redis.call('HDEL', KEYS[1], 'prev', 'nextscope', 'nextreturning')
return 1`;

/**
 * Empties the returning list (scope-record.ts) if the phase is still migrate at epoch ARGV[1] and
 * the list is still ARGV[2] (what the return sweep found no key of).
 */
export const RETURNED_SCRIPT = `
local cur = redis.call('HMGET', KEYS[1], 'phase', 'epoch', 'returning')
if cur[1] ~= 'migrate' or cur[2] ~= ARGV[1] or (cur[3] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'returning', '')
return 1`;

export const STATE_FIELDS = ['phase', 'epoch', 'next', 'since', 'by', 'prev', 'scope', 'returning', 'scopedrained'] as const;

/** A phase processes act on (a stored value that is not one, e.g. '' or fencing, is null). */
export function settledPhase(p: string | null | undefined): PhaseName | null {
  return p === 'hold' || p === 'migrate' || p === 'drained' || p === 'reverse' ? p : null;
}

export function parseState(r: Array<string | null>): PhaseState | null {
  const [phase, epoch, next, since, by, prev, scope, returning, scopeDrained] = r;
  if (!phase || !epoch) return null;
  return {
    phase: phase as PhaseName,
    epoch: Number(epoch),
    next: next ? (next as PhaseName) : null,
    prev: settledPhase(prev),
    since: Number(since ?? 0),
    by: by ?? '',
    scope: scope || returning ? parseScopeRecord([scope, returning]) : NO_SCOPE,
    scopeDrained: Number(scopeDrained ?? 0) || 0,
  };
}

/** The phase the fleet last acted on: the phase itself, or while fencing the one before. */
export function lastActedPhase(s: PhaseState): PhaseName | null {
  return s.phase === 'fencing' ? s.prev : s.phase;
}

/** Reads the phase hash once (null: no phase key on this server). */
export async function readPhase(c: Redis): Promise<PhaseState | null> {
  const r = (await c.hmget(PHASE_KEY, ...STATE_FIELDS)) as Array<string | null>;
  return parseState(r);
}

/**
 * Kills every connection fenced for an epoch older than `epoch` on one server. Returns how many.
 */
export async function killOlderThan(c: Redis, epoch: number): Promise<number> {
  const list = (await c.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string;
  const ids: string[] = [];
  for (const line of list.split('\n')) {
    const name = /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '';
    const e = epochOfName(name);
    if (e !== null && e < epoch) {
      const id = /(?:^| )id=(\d+)/.exec(line)?.[1];
      if (id) ids.push(id);
    }
  }
  if (ids.length === 0) return 0;
  const p = c.pipeline();
  for (const id of ids) p.call('CLIENT', 'KILL', 'ID', id);
  const res = (await p.exec()) ?? [];
  return res.filter(([err, v]) => !err && Number(v) > 0).length;
}
