/**
 * What a scoped runtime (a canary migration) gives its sessions: the scope, the scopes coming back,
 * the reverse mover that brings their keys home, and the counters of each side (scope-route.ts).
 */
import type { Mover } from '../migration/mover.js';
import type { Scope } from '../phase/scope.js';
import type { Endpoint } from '../upstream/endpoint.js';

/** Commands, errors and time on each side of the scope, for /status and /metrics. */
export class ScopeCounters {
  /** Commands whose keys were all in scope (served by the new server). */
  inScope = 0;
  /** Commands whose keys were all out of scope (served by the old server). */
  outScope = 0;
  /** Error replies (rehome's own included) of commands in scope. */
  inErrors = 0;
  /** Seconds commands in scope took, from dispatch to their reply (first-touch moves included). */
  inSeconds = 0;
  /** Error replies and failures of commands out of scope. */
  outErrors = 0;
  /** Seconds commands out of scope took, from dispatch to their reply. */
  outSeconds = 0;
  /** Refused: keys on both sides (-CROSSSCOPE), or out of scope inside MULTI/WATCH. */
  crossScope = 0;
  /** Keys that left the scope brought back from the new server by a client's command. */
  returnedByTouch = 0;

  /** A command's reply is out (reply-order.ts): its side's time and, for an error reply, errors. */
  done(mark: SideMark, firstByte: number | undefined): void {
    const seconds = (performance.now() - mark.t0) / 1000;
    // '-' simple error, '!' RESP3 blob error.
    const error = firstByte === 0x2d || firstByte === 0x21;
    if (mark.inScope) {
      this.inSeconds += seconds;
      if (error) this.inErrors++;
    } else {
      this.outSeconds += seconds;
      if (error) this.outErrors++;
    }
  }
}

/** Which side of the scope a command is on, carried by its entry until its reply is out. */
export interface SideMark {
  readonly counters: ScopeCounters;
  readonly inScope: boolean;
  /** When it was dispatched. */
  readonly t0: number;
}

/** What a scoped runtime gives its sessions (SessionContext.scope). */
export interface ScopeRouting {
  readonly scope: Scope;
  /** Scopes whose keys may still be on the new server although out of scope now (narrowed). */
  returning: Scope[];
  /**
   * The scopes that were returning when the epoch began, kept after `returning` is emptied: a
   * SCAN begun while keys came back must still look for them on the old server (keyspace-scan.ts).
   */
  readonly cameBack: readonly Scope[];
  /** The reverse mover (new -> old) for keys coming back; null when nothing is returning. */
  back: Mover | null;
  readonly old: Endpoint;
  readonly connectTimeoutMs: number;
  readonly counters: ScopeCounters;
}

