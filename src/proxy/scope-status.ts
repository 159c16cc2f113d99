/**
 * What a canary migration shows (docs/DESIGN.md "Scope"): in /status its scope, whether the scope
 * has drained, the keys left on the old server outside it, the keys coming back after a
 * narrowing, and each side's commands, errors and time; in /metrics the same as figures.
 */
import { describeScope } from '../phase/scope.js';
import type { PhaseState } from '../phase/phase.js';
import type { Runtime } from './runtime.js';
import type { ScopeFigures } from '../admin/metrics.js';

/** The /metrics figures of a canary (null: no scope in force). */
export function scopeFigures(rt: Runtime | null): ScopeFigures | null {
  const sc = rt?.scoped ?? null;
  if (rt === null || sc === null) return null;
  const c = sc.routing.counters;
  return {
    inScope: c.inScope, outScope: c.outScope, crossScope: c.crossScope, inErrors: c.inErrors, inSeconds: c.inSeconds, outErrors: c.outErrors, outSeconds: c.outSeconds,
    drained: rt.migration.phase === 'drained', returning: sc.routing.returning.length > 0,
  };
}

function avgMs(seconds: number, n: number): number | null {
  return n > 0 ? Number(((seconds * 1000) / n).toFixed(3)) : null;
}

/** The /status section of a canary, or null when no scope is in force. */
export function scopeStatus(rt: Runtime | null, shared: PhaseState | null): Record<string, unknown> | null {
  const sc = rt?.scoped ?? null;
  if (rt === null || sc === null) return null;
  const m = rt.migration;
  const label = describeScope(sc.routing.scope);
  const outside = m.remainingTotal;
  const drained = m.phase === 'drained';
  // The fleet's record says when keys are home, whichever process swept them back.
  const returning = shared?.scope.returning ?? sc.routing.returning;
  const back = sc.back;
  const c = sc.routing.counters;
  const summary = [
    drained
      ? `scope ${label} drained; ${outside} keys outside the scope still on the old server`
      : `scope ${label} migrating; ${m.sweeper?.lastPassSeen !== undefined && m.sweeper.lastPassSeen >= 0 ? `${m.sweeper.lastPassSeen} keys of it found by the last sweep pass; ` : ''}${outside} keys on the old server in all`,
  ];
  if (returning.length > 0) summary.push(`keys that left the scope (${returning.map(describeScope).join(' | ')}) are coming back to the old server: ${back?.moved ?? 0} moved back so far`);
  return {
    scope: label,
    patterns: sc.routing.scope.patterns,
    dbs: sc.routing.scope.dbs,
    drained,
    summary: summary.join('; '),
    keys_on_old_server: outside,
    keys_in_scope_last_pass: m.sweeper?.lastPassSeen ?? null,
    returning: returning.map(describeScope),
    moved_back: back?.moved ?? 0,
    commands: { in_scope: c.inScope, out_of_scope: c.outScope, cross_scope_refused: c.crossScope },
    errors: { in_scope: c.inErrors, out_of_scope: c.outErrors },
    // From dispatch to reply; in scope includes first-touch moves.
    in_scope_avg_ms: avgMs(c.inSeconds, c.inScope),
    out_of_scope_avg_ms: avgMs(c.outSeconds, c.outScope),
  };
}
