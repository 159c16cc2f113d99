/**
 * The sweeper's steps with a proxy-side method (`--move-method dump|copy`): the protocol of
 * proxy-move.ts over whole batches, with two batches in flight, as a pipelined client copy has:
 *
 *   step k   source: release batch k-2, then SCAN + claim (+ DUMP, or a        one script
 *                    string's value for the type-aware copy) batch k
 *            target: publish batch k-1                                         at the same time
 *
 * Folding step 6 of one batch into the claim script of a later one saves a source round trip per
 * batch, and it keeps every change the sweeper makes to the source inside its step scripts: the
 * step's touches-first signal (keys that left the db between two steps were moved by clients)
 * then counts only clients' moves. A batch's keys are joinable by touches (single-flight) until
 * they are released; flush() releases what is published and waits, at a db's end or when the
 * sweeper stops.
 */
import type { ControlPool } from '../upstream/control.js';
import type { Carried, Outcome } from './move-copy.js';
import { moveKeys } from './move-keys.js';
import { asMoveError, failure, releases, type ProxyMove, type ProxyMoveResult } from './proxy-move.js';
import type { SweepStepResult, TouchSignal } from './sweep-step.js';
import { PUBLISH_BATCH_SCRIPT, SWEEP_CLAIM_SCRIPT, SWEEP_RELEASE_SCRIPT } from './sweep-move-scripts.js';

/** What the proxy-side sweep needs of the mover. */
export interface ProxySweepHost {
  /** Books a finished batch in the mover's stats. */
  book(r: ProxyMoveResult): void;
  /** Makes the batch's keys in flight: a client's touch of one of them joins it (single-flight). */
  track(db: number, keys: readonly string[], batch: Promise<Map<string, Error>>): void;
  /** Keys found claimed by another mover: through the protocol. Returns the failures. */
  sweepClaims(db: number, claims: readonly Buffer[]): Promise<number>;
}

/** Keys claimed by one step: one token, one lease. */
interface Batch {
  db: number;
  keys: Buffer[];
  token: string;
  leaseEnd: number;
  /** Deadlines of keys with a TTL, by index. */
  deadlines: Map<number, string>;
  /** DUMPs (the dump method), or strings' values with nil for other types (the type-aware copy). */
  payloads: Array<Buffer | null>;
  dump: boolean;
  res: ProxyMoveResult;
  /** Indexes of keys whose outcome lets the claim go. */
  release: number[];
  /** Ends the batch for touches that joined it. */
  settle: (fails: Map<string, Error>) => void;
}

type ClaimReply = [
  Buffer, Buffer[], Buffer, Array<number | Buffer>, Buffer[], Buffer[], number[], Buffer[], number, number, number, number, number, number,
];

/** See the file comment. One per mover; steps of one db at a time. */
export class ProxySweep {
  /** Claimed by the last step, being published. */
  private publishing: Promise<Batch> | null = null;
  /** Published, to be released by the next step. */
  private published: Batch | null = null;
  /** The token of `publishing` ('' for none): the step script leaves its claim keys alone. */
  private publishingToken = '';

  /** The source pool the steps run on (the last batches' release at flush). */
  private source: ControlPool | null = null;

  constructor(
    private readonly proxy: ProxyMove,
    private readonly host: ProxySweepHost,
  ) {}

  /**
   * One step: release the published batch, claim the next, publish the one claimed before.
   * `moved` and `failed` count the batches finished during this step.
   */
  async step(db: number, pool: ControlPool, cursor: string, count: number, touch: TouchSignal, match: Buffer): Promise<SweepStepResult> {
    this.source = pool;
    const conn = pool.db(db);
    let moved = 0;
    let failed = 0;
    const done = (r: ProxyMoveResult): void => {
      moved += r.moved;
      failed += r.fails.size;
      this.host.book(r);
    };
    const rel = this.published;
    this.published = null;
    const opts = this.proxy.opts;
    const dump = opts.method === 'dump';
    let r: ClaimReply;
    try {
      r = (await conn.callBuffer(
        'EVAL', SWEEP_CLAIM_SCRIPT, 0, cursor, String(count), opts.owner, String(opts.leaseMs), String(opts.bigKeyBytes), dump ? '1' : '0',
        String(touch.smallCount), String(touch.prevSize), touch.recent ? '1' : '0', String(touch.prevGone),
        rel?.token ?? '', this.publishingToken, match, ...(rel ? rel.release.map((i) => rel.keys[i]!) : []),
      )) as ClaimReply;
    } catch (e) {
      // Released or not: uncertain. Claims that stayed are taken over by the next mover.
      if (rel) this.host.book(this.fail(rel, e));
      await this.flush();
      throw e;
    }
    const [next, keys, tok, dls, payloads, big, bigSizes, claims, heldUs, size, leaseEnd, touched, used, gone] = r;
    if (rel) done(this.settle(rel));
    const prev = this.publishing;
    this.publishing = keys.length > 0 ? this.publishSoon(this.batch(db, keys, tok.toString(), Number(leaseEnd), dls, payloads, dump)) : null;
    this.publishingToken = keys.length > 0 ? tok.toString() : '';
    if (prev) this.published = await prev;
    if (next.toString() === '0') await this.flush(done);
    failed += await this.host.sweepClaims(db, this.notInFlight(claims));
    return {
      cursor: next.toString(), big, bigSizes, failed, heldMs: heldUs / 1000, moved, touched: Math.max(0, touched), count: used, gone,
      seen: keys.length + big.length + claims.length,
      // Claims moved one by one changed the db after the step: not clients' touches.
      size: claims.length > 0 ? -1 : size,
    };
  }

  /**
   * The claims to move through the protocol now: not those of keys in this sweeper's batch still
   * in flight. A client's touch can take over a key of a batch the sweeper claimed (its own
   * claim, so at once), and that key's claim then shows up here with the touch's token; but the
   * key stays joined to the batch (single-flight) until the batch is released, which the next
   * step does: moving it now waited for this very step, and the sweep stopped for good (and a
   * SIGTERM with it). The next pass finds the key if it is still claimed.
   */
  private notInFlight(claims: Buffer[]): Buffer[] {
    // The script that found these claims also claimed the step's new batch (no touch can have
    // taken a key of it over yet) and released the batch before the published one: only the
    // published batch can hold such a key.
    const b = this.published;
    if (claims.length === 0 || b === null) return claims;
    const mine = new Set(b.keys.map((k) => k.toString('latin1')));
    return claims.filter((k) => !mine.has(k.toString('latin1')));
  }

  /** Publishes what is claimed and releases what is published (a db's end, a pause, a stop). */
  async flush(done: (r: ProxyMoveResult) => void = (r) => this.host.book(r)): Promise<void> {
    const batches: Batch[] = [];
    if (this.published) batches.push(this.published);
    this.published = null;
    const p = this.publishing;
    this.publishing = null;
    this.publishingToken = '';
    if (p) batches.push(await p);
    for (const b of batches) {
      try {
        if (b.release.length > 0) await this.source!.db(b.db).callBuffer('EVAL', SWEEP_RELEASE_SCRIPT, 0, b.token, ...b.release.map((i) => b.keys[i]!));
        done(this.settle(b));
      } catch (e) {
        done(this.fail(b, e));
      }
    }
  }

  private batch(db: number, keys: Buffer[], token: string, leaseEnd: number, dls: Array<number | Buffer>, payloads: Array<Buffer | null>, dump: boolean): Batch {
    const deadlines = new Map<number, string>();
    for (let i = 0; i < dls.length; i += 2) deadlines.set(Number(dls[i]) - 1, dls[i + 1]!.toString());
    let settle!: (fails: Map<string, Error>) => void;
    const joined = new Promise<Map<string, Error>>((resolve) => (settle = resolve));
    this.host.track(db, keys.map((k) => k.toString('latin1')), joined);
    return { db, keys, token, leaseEnd, deadlines, payloads, dump, res: { moved: 0, absent: 0, fails: new Map() }, release: [], settle };
  }

  /**
   * publish() once the sweeper has sent its next step: building a batch's publish takes the event
   * loop a while (every key and payload serialized), and the source would wait idle for that.
   */
  private publishSoon(b: Batch): Promise<Batch> {
    return new Promise((resolve) => setImmediate(() => resolve(this.publish(b))));
  }

  /** Steps 4-5 for a batch; books each outcome. Never rejects: a failed publish fails every key. */
  private async publish(b: Batch): Promise<Batch> {
    let outs: Map<number, Outcome>;
    let ok: number;
    try {
      [ok, outs] = b.dump ? await this.publishDumps(b) : await this.publishCopies(b);
      await this.proxy.durability.wait(b.db, b.keys);
    } catch (e) {
      for (const k of b.keys) b.res.fails.set(k.toString('latin1'), asMoveError(e, k));
      return b;
    }
    b.res.moved += ok;
    for (let i = 0; i < b.keys.length; i++) {
      const out = outs.get(i);
      if (out === undefined) {
        b.release.push(i);
        continue;
      }
      const name = b.keys[i]!.toString('latin1');
      if (!releases(out)) {
        b.res.fails.set(name, failure(out, name));
        continue;
      }
      b.res.absent++;
      if (out !== 'EXPIRED') this.proxy.exists++;
      b.release.push(i);
    }
    return b;
  }

  /** The dump method: one target script, outcomes other than OK by index. */
  private async publishDumps(b: Batch): Promise<[number, Map<number, Outcome>]> {
    const args: Array<string | Buffer> = [String(this.proxy.opts.lateWindowMs), String(b.leaseEnd), ...(b.payloads as Buffer[])];
    for (const [i, d] of b.deadlines) args.push(String(i + 1), d);
    const [ok, pairs] = (await this.proxy.target.db(b.db).callBuffer('EVAL', PUBLISH_BATCH_SCRIPT, b.keys.length, ...b.keys, ...args)) as [number, Array<number | Buffer>];
    const outs = new Map<number, Outcome>();
    for (let i = 0; i < pairs.length; i += 2) outs.set(Number(pairs[i]) - 1, pairs[i + 1]!.toString());
    return [ok, outs];
  }

  /** The type-aware copy, key by key through the copier (proxy-move.ts's path). */
  private async publishCopies(b: Batch): Promise<[number, Map<number, Outcome>]> {
    const carried: Carried[] = b.keys.map((k, i) => ({ names: moveKeys(k), tok: b.token, deadline: b.deadlines.get(i) ?? '-1', leaseEnd: b.leaseEnd, payload: null, value: b.payloads[i] ?? null }));
    const all = await this.proxy.copier.publish(b.db, carried);
    const outs = new Map<number, Outcome>();
    let ok = 0;
    all.forEach((o, i) => (o === 'OK' ? ok++ : outs.set(i, o)));
    return [ok, outs];
  }

  /**
   * Step 6 done. A claim the release left (its token changed: taken over while this process
   * stalled past its lease) is released by its new mover, which finds the target's copy or marker
   * published here: the target's copy is in charge either way, as after EXISTS.
   */
  private settle(b: Batch): ProxyMoveResult {
    b.settle(b.res.fails);
    return b.res;
  }

  /** The release did not (surely) run: every key of the batch fails; its claims stay. */
  private fail(b: Batch, e: unknown): ProxyMoveResult {
    for (const i of b.release) b.res.fails.set(b.keys[i]!.toString('latin1'), asMoveError(e, b.keys[i]!));
    b.res.moved = 0;
    b.res.absent = 0;
    b.settle(b.res.fails);
    return b.res;
  }
}
