/**
 * What the mover counts (status, /metrics, the progress log): keys moved by touches and by the
 * sweeper, probes, and errors by kind (move-errors.ts).
 */
import type { MoveErrorKind } from './move-errors.js';

/** How keys move: the source's MIGRATE, or the proxy-side move with one of its copy methods. */
export type MoveMethod = 'migrate' | 'dump' | 'copy';

/** A key in a db. */
export interface KeyRef {
  db: number;
  key: string;
}

/** Counters the mover keeps (reported by status/metrics). */
export interface MoverStats {
  migrateCalls: number;
  /** Keys confirmed absent because a client touched them (moved or NOKEY). */
  keysMovedOnTouch: number;
  /** Keys moved by the background sweeper. */
  keysMovedBySweeper: number;
  keysMoved: number;
  keysAbsent: number;
  probes: number;
  resolvedBoth: number;
  failures: number;
  errorsByKind: Record<string, number>;
}

export function newMoverStats(): MoverStats {
  return { migrateCalls: 0, keysMovedOnTouch: 0, keysMovedBySweeper: 0, keysMoved: 0, keysAbsent: 0, probes: 0, resolvedBoth: 0, failures: 0, errorsByKind: {} };
}

export function countMoved(stats: MoverStats, moved: number, absent: number, origin: 'touch' | 'sweep'): void {
  stats.keysMoved += moved;
  stats.keysAbsent += absent;
  if (origin === 'sweep') stats.keysMovedBySweeper += moved;
  else stats.keysMovedOnTouch += moved;
}

export function countError(stats: MoverStats, kind: MoveErrorKind): void {
  stats.errorsByKind[kind] = (stats.errorsByKind[kind] ?? 0) + 1;
}
