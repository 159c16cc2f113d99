/**
 * What one sweeper step tells the sweeper, and what the sweeper tells the step about clients'
 * first touches. Both ways of moving (the MIGRATE script in the source, the proxy-side claim
 * step) answer in these terms.
 */

/**
 * What a sweep step knows of clients' first touches (SWEEP_SCRIPT's touches-first rule): the
 * batch to take when touches were seen, the db's size at the end of the previous step (-1: no
 * previous step), the keys the server had expired or evicted by then (-1: unknown), and whether
 * the sweeper saw touches recently.
 */
export interface TouchSignal {
  smallCount: number;
  prevSize: number;
  prevGone: number;
  recent: boolean;
}

export const NO_TOUCH_SIGNAL: TouchSignal = { smallCount: 1, prevSize: -1, prevGone: -1, recent: false };

/** One sweep step's outcome. */
export interface SweepStepResult {
  cursor: string;
  moved: number;
  big: Buffer[];
  bigSizes: number[];
  failed: number;
  /** How long the step held the source (its own clock). */
  heldMs: number;
  /** The db's size when the step ended. */
  size: number;
  /** Keys that left the db since the previous step (moved by clients' touches). */
  touched: number;
  /** Keys the server had expired or evicted when the step ended (its INFO stats; -1: unknown). */
  gone: number;
  /** The SCAN count the step used (the small one when touches were seen). */
  count: number;
  /** Keys of the client's the step found (a scoped sweep's pass that finds none has drained it). */
  seen: number;
}
