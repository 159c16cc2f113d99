/**
 * What a scoped runtime (a canary migration) gives its sessions: the scope, the scopes coming back,
 * the reverse mover that brings their keys home, and the counters of each side (scope-route.ts).
 */
import type { Mover } from '../migration/mover.js';
import type { Scope } from '../migration/scope.js';
import type { Endpoint } from '../upstream/endpoint.js';

/** Commands, errors and time on each side of the scope, for /status and /metrics. */
export class ScopeCounters {
  /** Commands whose keys were all in scope (served by the new server). */
  inScope = 0;
  /** Commands whose keys were all out of scope (served by the old server). */
  outScope = 0;
  /** Error replies and failures of commands out of scope. */
  outErrors = 0;
  /** Seconds spent on commands out of scope, from sending to the old server to its reply. */
  outSeconds = 0;
  /** Refused: keys on both sides (-CROSSSCOPE), or out of scope inside MULTI/WATCH. */
  crossScope = 0;
  /** Keys that left the scope brought back from the new server by a client's command. */
  returnedByTouch = 0;
}

/** What a scoped runtime gives its sessions (SessionContext.scope). */
export interface ScopeRouting {
  readonly scope: Scope;
  /** Scopes whose keys may still be on the new server although out of scope now (narrowed). */
  returning: Scope[];
  /** The reverse mover (new -> old) for keys coming back; null when nothing is returning. */
  back: Mover | null;
  readonly old: Endpoint;
  readonly connectTimeoutMs: number;
  readonly counters: ScopeCounters;
}

