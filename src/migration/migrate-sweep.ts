/**
 * The sweeper's step with MIGRATE, run entirely inside the source by a script (SWEEP_SCRIPT):
 * SCAN one step, size each key, and MIGRATE the small ones (KEYS form, no REPLACE), counting the
 * moved ones by DBSIZE. The script sends the source only what docs/DESIGN.md rule 1 allows (SCAN,
 * probes, MIGRATE) and returns no key names unless MIGRATE failed, when every small key is probed
 * and resolved (rules 3 and 4). Big keys come back to be moved alone. `heldMs` is how long the
 * step held the source, as the source's clock measured it (the batch size adapts to it).
 */
import type { ControlPool } from '../upstream/control.js';
import { migrateAuthArgs } from '../upstream/endpoint.js';
import type { MigrateDestination } from './migrate-call.js';
import { SWEEP_SCRIPT } from './migrate-scripts.js';
import type { SweepStepResult, TouchSignal } from './sweep-step.js';

/** What the MIGRATE sweep step needs of the mover. */
export interface MigrateSweepHost {
  /** The step ran MIGRATE for `keys` keys, in `ms`, successfully or not. */
  migrated(ms: number, keys: number, ok: boolean): void;
  /** The script's MIGRATE failed with this text. */
  failedWith(text: string): void;
  movedBySweeper(moved: number): void;
  /** Probes and resolves one key after an uncertain MIGRATE; rejects if it stays unresolved. */
  resolve(db: number, key: string, firstErr: Error): Promise<void>;
  /** Keys found claimed by a proxy-side move: through the protocol. Returns the failures. */
  sweepClaims(db: number, claims: readonly Buffer[]): Promise<number>;
}

/** One step; throws when the script cannot run (scripts disabled or denied), so the caller falls back. */
export async function migrateSweepStep(
  host: MigrateSweepHost,
  pool: ControlPool,
  d: MigrateDestination,
  step: { db: number; cursor: string; count: number; bigKeyBytes: number; timeoutMs: number; touch: TouchSignal; match: Buffer },
): Promise<SweepStepResult> {
  const { db, touch } = step;
  const t0 = performance.now();
  const r = (await pool
    .db(db)
    .callBuffer(
      'EVAL', SWEEP_SCRIPT, '0', step.cursor, String(step.count), String(step.bigKeyBytes), d.host, String(d.port), String(db),
      String(step.timeoutMs), String(touch.smallCount), String(touch.prevSize), touch.recent ? '1' : '0', String(touch.prevGone),
      step.match, ...migrateAuthArgs(d),
    )) as [Buffer, number, Buffer[], number[], Buffer, Buffer[], number, number, number, number, number, Buffer[], number];
  const [next, moved, big, bigSizes, errBuf, small, heldUs, sent, size, others, used, claims, gone] = r;
  const err = errBuf.toString('latin1');
  if (err !== '') host.failedWith(err);
  let failed = 0;
  if (sent > 0) host.migrated(performance.now() - t0, sent, err === '');
  host.movedBySweeper(moved);
  if (err !== '') {
    // Uncertain (IOERR, BUSYKEY, OOM, part-way): probe and resolve each key.
    const firstErr = new Error(err);
    await Promise.all(
      small.map((k) =>
        host.resolve(db, k.toString('latin1'), firstErr).catch(() => {
          failed++;
        }),
      ),
    );
  }
  failed += await host.sweepClaims(db, claims);
  return {
    cursor: next.toString('latin1'), moved, big, bigSizes, failed, heldMs: heldUs / 1000,
    size, touched: Math.max(0, others), count: used, gone, seen: sent + big.length + claims.length,
  };
}
