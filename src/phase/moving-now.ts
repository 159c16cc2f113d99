/**
 * Which way keys may be moving by MIGRATE between the pair right now, as the old server's phase
 * key tells it (moves by DUMP/RESTORE hold neither server). A MIGRATE against that direction
 * would meet one of rehome's: each server waits, inside its MIGRATE, for the other to run the
 * RESTORE, and both answer nobody until MIGRATE's timeout (docs/DESIGN.md, "One direction at a
 * time"). `rehome plan` probes only the directions left free.
 */
import type { Redis } from 'ioredis';
import { readPhase, type PhaseState } from './phase-record.js';

export interface MovingNow {
  /** Keys may be moving old -> new (by MIGRATE on the old server). */
  forward: boolean;
  /** Keys may be moving new -> old (by MIGRATE on the new server). */
  reverse: boolean;
  /** Why, for a report: e.g. 'phase migrate'. */
  why: string;
}

/**
 * A canary narrowed: keys that left the scope come back new -> old by MIGRATE on the new server
 * while keys of the scope still leave the old one. A MIGRATE each way at once holds both servers
 * until its timeout, so in such an epoch keys of the scope move by DUMP/RESTORE through rehome
 * instead (proxy/runtime.ts; MIGRATE's pairs take those payloads).
 */
export function keysComeBack(s: PhaseState | null): boolean {
  return s !== null && s.phase === 'migrate' && s.scope.returning.length > 0;
}

/**
 * `old` is a connection to the old server on db 0; `newHoldsKeys`, whether the new server holds
 * data keys (without a phase key, the only sign of a migration under way).
 */
export async function movingNow(old: Redis, newHoldsKeys: boolean): Promise<MovingNow> {
  const s = await readPhase(old);
  switch (s?.phase ?? null) {
    case null:
      // A proxy without phases only ever migrates old -> new.
      return newHoldsKeys
        ? { forward: true, reverse: false, why: 'the new server holds keys and there is no phase key: a migration may be under way' }
        : { forward: false, reverse: false, why: 'no migration under way' };
    case 'migrate':
      if (keysComeBack(s)) return { forward: false, reverse: true, why: 'phase migrate, keys that left the scope coming back' };
      return { forward: true, reverse: false, why: 'phase migrate' };
    case 'reverse':
      return { forward: false, reverse: true, why: 'phase reverse' };
    case 'fencing':
      // A switch's own checks may probe the way it switches to.
      return { forward: true, reverse: true, why: 'a phase switch is under way' };
    default:
      return { forward: false, reverse: false, why: `phase ${s!.phase}` };
  }
}
