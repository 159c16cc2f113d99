/**
 * The sweeper's step with a proxy-side method (ProxyMove.claimStep/finishStep), in
 * SweepStepResult's terms. The publish and release of one batch run while the next batch is
 * claimed: two batches in flight, as a pipelined client copy has.
 */
import type { ControlPool } from '../upstream/control.js';
import type { Carried } from './move-copy.js';
import type { ProxyMove, ProxyMoveResult } from './proxy-move.js';
import type { SweepStepResult } from './sweep-step.js';

/** What the proxy-side sweep needs of the mover. */
export interface ProxySweepHost {
  /** Books a finished batch in the mover's stats. */
  book(r: ProxyMoveResult): void;
  /** Makes the batch's keys in flight: a client's touch of one of them joins it (single-flight). */
  track(db: number, keys: readonly string[], batch: Promise<Map<string, Error>>): void;
  /** Keys found claimed by another mover: through the protocol. Returns the failures. */
  sweepClaims(db: number, claims: readonly Buffer[]): Promise<number>;
}

export class ProxySweep {
  /** The previous batch's publish and release. */
  private finishing: Promise<ProxyMoveResult> | null = null;

  constructor(
    private readonly proxy: ProxyMove,
    private readonly host: ProxySweepHost,
  ) {}

  /**
   * Claims the next batch and finishes the previous one: `moved` and `failed` count the batch
   * finished during this step (the previous one; at a db's last step, this one too).
   */
  async step(db: number, pool: ControlPool, cursor: string, count: number, match: Buffer): Promise<SweepStepResult> {
    const st = await this.proxy.claimStep(db, pool.db(db), cursor, count, match);
    const prev = this.finishing;
    this.finishing = st.carried.length > 0 ? this.finish(db, st.carried) : null;
    const done: ProxyMoveResult[] = [];
    if (prev !== null) done.push(await prev);
    if (st.cursor === '0' && this.finishing !== null) {
      done.push(await this.finishing);
      this.finishing = null;
    }
    let moved = 0;
    let failed = 0;
    for (const r of done) {
      moved += r.moved;
      failed += r.fails.size;
      this.host.book(r);
    }
    failed += await this.host.sweepClaims(db, st.claims);
    const seen = st.carried.length + st.big.length + st.claims.length;
    return { cursor: st.cursor, moved, big: st.big, bigSizes: st.bigSizes, failed, heldMs: st.heldMs, size: st.size, touched: 0, count, gone: -1, seen };
  }

  private finish(db: number, carried: readonly Carried[]): Promise<ProxyMoveResult> {
    const p = this.proxy.finishStep(db, carried);
    this.host.track(db, carried.map((c) => c.names.key.toString('latin1')), p.then((r) => r.fails));
    return p;
  }
}
