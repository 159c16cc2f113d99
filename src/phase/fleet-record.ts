/**
 * What the fleet shares besides the phase, kept in the same hash on the old server
 * (`__rehome:phase`, see phase.ts), so that it lives as long as the phase does, is read with it
 * in one HMGET, and survives what the phase survives (switches, restarts, FLUSHALL through
 * rehome, which keeps the hash whole):
 *
 *   sweep:rate     the sweeper's rate limit in keys/s ('0': none), for whichever process sweeps
 *   sweep:paused   why the fleet's sweeper is paused ('' or absent: not paused)
 *   sweep:set_by   who set them last; sweep:set_at: when (ms)
 *   sweep:report   JSON: the sweeping process's rate and what it saw, rewritten every second
 *
 * The settings are not part of the invariant (a sweep at any rate, or none, is safe), so they are
 * plain writes, not fenced ones.
 */

/** The sweeper settings as the fleet stores them. */
export interface SweepSettings {
  /** Keys/s at most (0: no limit); null when the fleet has none stored yet. */
  rate: number | null;
  /** Why the fleet's sweeper is paused; null when it is not. */
  paused: string | null;
  by: string;
  at: number;
}

/** A change an operator (or the source watch) asks for; fields left out keep their value. */
export interface SweepChange {
  rate?: number;
  /** A reason pauses; null resumes. */
  paused?: string | null;
}

/** What the sweeping process publishes every second, for every process's status. */
export interface SweepReport {
  /** The process, as in its `proc:<id>` report. */
  id: string;
  phase: string;
  epoch: number;
  /** Keys/s the process moved (smoothed), sweeper and its own touches. */
  rate: number;
  /** Keys left as the process last counted them. */
  remaining: number;
  /** ms timestamp of the publisher's clock. */
  at: number;
}

export const SETTINGS_FIELDS = ['sweep:rate', 'sweep:paused', 'sweep:set_by', 'sweep:set_at'] as const;
export const REPORT_FIELD = 'sweep:report';

export const NO_SETTINGS: SweepSettings = { rate: null, paused: null, by: '', at: 0 };

/** The settings from an HMGET of SETTINGS_FIELDS. */
export function parseSettings(r: ReadonlyArray<string | null | undefined>): SweepSettings {
  const [rate, paused, by, at] = r;
  const n = rate === null || rate === undefined || rate === '' ? null : Number(rate);
  return {
    rate: n !== null && Number.isInteger(n) && n >= 0 ? n : null,
    paused: paused ? paused : null,
    by: by ?? '',
    at: Number(at ?? 0) || 0,
  };
}

export function sameSettings(a: SweepSettings, b: SweepSettings): boolean {
  return a.rate === b.rate && a.paused === b.paused;
}

/** The HSET field/value pairs of a change. */
export function changeFields(change: SweepChange, by: string, now: number): string[] {
  const out: string[] = [];
  if (change.rate !== undefined) out.push('sweep:rate', String(change.rate));
  if (change.paused !== undefined) out.push('sweep:paused', change.paused ?? '');
  out.push('sweep:set_by', by, 'sweep:set_at', String(now));
  return out;
}

/** A stored report, or null when there is none or it cannot be read. */
export function parseReport(text: string | null | undefined): SweepReport | null {
  if (!text) return null;
  try {
    const r = JSON.parse(text) as Partial<SweepReport>;
    if (typeof r.id !== 'string' || typeof r.epoch !== 'number' || typeof r.rate !== 'number' || typeof r.at !== 'number') return null;
    return { id: r.id, phase: String(r.phase ?? ''), epoch: r.epoch, rate: r.rate, remaining: Number(r.remaining ?? 0), at: r.at };
  } catch {
    return null;
  }
}
