/**
 * The mover: confirms keys absent from the source by moving them to the target with MIGRATE
 * (never REPLACE), resolving every uncertain outcome by probing (docs/DESIGN.md rules 2-4).
 *
 * Outcomes of one MIGRATE and what follows:
 *   OK / NOKEY                 -> every key is absent from the source now
 *   any error (IOERR, timeout, -> each key is probed: absent from source -> done;
 *   BUSYKEY, OOM, partial)        in both -> the target copy wins, DEL the source copy;
 *                                 source only -> MIGRATE it again (once), then give up with
 *                                 the cause; the key stays in the source.
 *
 * Where MIGRATE can't be used (`--move-method dump|copy`), every move goes through the proxy-side
 * protocol (proxy-move.ts) instead; with MIGRATE, big keys of the sweeper still do, and a claim
 * key of K (another process's proxy-side move) counts as K present: such keys go through the
 * protocol too, which waits for the claim or takes it over.
 *
 * Concurrent moves of one key share one in-flight promise (single-flight).
 */
import { ErrorText, MoveError } from '../errors.js';
import type { ControlPool } from '../upstream/control.js';
import type { KnownAbsentCache } from './absent-cache.js';
import { ClaimPresent, type MigrateDestination, migrateKeys } from './migrate-call.js';
import { migrateFromCluster, migrateToCluster } from './migrate-cluster.js';
import { type MigrateSweepHost, migrateSweepStep } from './migrate-sweep.js';
import { classify, type MoveErrorKind, throwFirst, throwFor } from './move-errors.js';
import { moveKeys } from './move-keys.js';
import { countError, countMoved, type KeyRef, type MoveMethod, type MoverStats, newMoverStats } from './mover-stats.js';
import { PathBreaker } from './path-breaker.js';
import type { ProxyMove, ProxyMoveResult } from './proxy-move.js';
import { ProxySweep } from './proxy-sweep.js';
import { NO_TOUCH_SIGNAL, type SweepStepResult, type TouchSignal } from './sweep-step.js';

export type { MigrateDestination } from './migrate-call.js';
export { MOVE_ERROR_KINDS } from './move-errors.js';
export type { SweepStepResult, TouchSignal } from './sweep-step.js';
export type { KeyRef, MoveMethod, MoverStats } from './mover-stats.js';

/** Who asked for a move and how: touches fill the cache; big keys go in chunks. */
interface How {
  cache: boolean;
  origin: 'touch' | 'sweep';
  timeoutMs?: number | undefined;
  big?: boolean;
}

const TOUCH: How = { cache: true, origin: 'touch' };

const NO_FAILURES: Map<string, Error> = new Map();

/** A sweep step without SCAN MATCH. */
const NO_MATCH = Buffer.alloc(0);

/** Moves keys from the source to the target; see the file comment. */
export class Mover {
  readonly stats: MoverStats = newMoverStats();
  /** Keys being moved now, each with the batch that moves it (single-flight). */
  private readonly inflight = new Map<string, { batch: Promise<Map<string, Error>>; key: string }>();
  /**
   * The source holds no key in any db: nothing needs confirming any more (rule 1: the source
   * never gains keys), so gates pass without consulting it.
   */
  drained = false;
  /** The last MIGRATE error text (for logs). */
  lastErrorText = '';
  /** Touches don't MIGRATE for a while after one ran into its timeout (path-breaker.ts). */
  private readonly path: PathBreaker;
  /** The sweeper's steps with a proxy-side method. */
  private readonly proxySweep: ProxySweep | null;
  /** Observes every MIGRATE's duration and outcome (metrics). */
  onMigrate: ((ms: number, keys: number, ok: boolean) => void) | null = null;

  constructor(
    private readonly source: ControlPool,
    private readonly target: ControlPool,
    readonly cache: KnownAbsentCache,
    private readonly dest: MigrateDestination,
    private readonly sweepSource: ControlPool | null = null,
    /** The proxy-side move: every move with dump/copy; big keys and claims with migrate. */
    readonly proxy: ProxyMove | null = null,
    readonly method: MoveMethod = 'migrate',
  ) {
    this.path = new PathBreaker(dest.timeoutMs, () => this.countError('path-down'));
    this.proxySweep = proxy === null ? null : new ProxySweep(proxy, {
      book: (r) => this.countProxyResult(r, 'sweep'),
      track: (db, keys, batch) => this.track(db, keys, batch),
      sweepClaims: (db, claims) => this.sweepClaims(db, claims),
    });
  }

  /**
   * Confirms every key absent from the source. Returns null when the cache already knows them all
   * (the steady-state path: no round trip, no promise), else a promise that rejects with a
   * MoveError if any key could not be confirmed.
   */
  gate(db: number, keys: readonly string[]): Promise<void> | null {
    if (this.drained) return null;
    const cache = this.cache;
    let i = 0;
    for (; i < keys.length; i++) if (!cache.has(db, keys[i]!)) break;
    if (i === keys.length) return null;
    return this.ensure([{ db, key: keys[i]! }, ...keys.slice(i + 1).map((key) => ({ db, key }))]);
  }

  /** Like gate() for keys in several dbs (MOVE, COPY ... DB). */
  gateRefs(refs: readonly KeyRef[]): Promise<void> | null {
    if (this.drained) return null;
    const missing = refs.filter((r) => !this.cache.has(r.db, r.key));
    return missing.length === 0 ? null : this.ensure(missing);
  }

  /**
   * Moves keys for the sweeper: same single-flight and probing as gate(), but the keys are not
   * added to the known-absent cache (they were never asked for by a client, and would push out
   * keys that are). `timeoutMs` overrides MIGRATE's timeout (big keys).
   */
  sweep(db: number, keys: readonly string[], timeoutMs?: number): Promise<void> {
    return this.ensure(
      keys.map((key) => ({ db, key })),
      { cache: false, origin: 'sweep', timeoutMs },
    );
  }

  /**
   * Moves one big key for the sweeper: with a proxy-side move at hand, in chunks (so no single
   * step holds either server for the whole value), else one MIGRATE with `timeoutMs`.
   */
  sweepBig(db: number, key: string, timeoutMs: number): Promise<void> {
    return this.ensure([{ db, key }], { cache: false, origin: 'sweep', timeoutMs, big: true });
  }

  private ensure(
    refs: readonly KeyRef[],
    how: How = TOUCH,
  ): Promise<void> {
    if (how.origin === 'touch') {
      // The sweeper gives way while clients' moves are in flight (Sweeper.giveWay).
      this.touchesInFlight++;
      const p = this.ensureRefs(refs, how);
      void p.then(this.touchDone, this.touchDone);
      return p;
    }
    return this.ensureRefs(refs, how);
  }

  /** Clients' moves in flight in this process now. */
  touchesInFlight = 0;
  private readonly touchDone = (): void => {
    this.touchesInFlight--;
  };

  private ensureRefs(refs: readonly KeyRef[], how: How): Promise<void> {
    const waits: Promise<void>[] = [];
    const byDb = new Map<number, string[]>();
    const seen = new Set<string>();
    for (const { db, key } of refs) {
      const id = `${db}:${key}`;
      // The sweeper's keys were just seen in the source: the cache has nothing to say about them.
      if (seen.has(id) || (how.cache && this.cache.has(db, key))) continue;
      seen.add(id);
      const f = this.inflight.get(id);
      if (f) {
        waits.push(f.batch.then((fails) => throwFor(fails, f.key)));
        continue;
      }
      let list = byDb.get(db);
      if (!list) byDb.set(db, (list = []));
      list.push(key);
    }
    for (const [db, keys] of byDb) {
      // One promise per batch (not per key): it resolves to the keys that could not be
      // confirmed, so a sweeper batch of hundreds of keys costs one promise.
      const batch = this.moveBatch(db, keys, how);
      this.track(db, keys, batch);
      waits.push(batch.then(throwFirst));
    }
    if (waits.length === 1) return waits[0]!;
    return Promise.all(waits).then(() => undefined);
  }

  /** Makes a batch's keys in flight until it ends: a move of one of them joins it. */
  private track(db: number, keys: readonly string[], batch: Promise<Map<string, Error>>): void {
    for (const k of keys) this.inflight.set(`${db}:${k}`, { batch, key: k });
    void batch.then(() => {
      for (const k of keys) {
        const id = `${db}:${k}`;
        if (this.inflight.get(id)?.batch === batch) this.inflight.delete(id);
      }
    });
  }

  /** One MIGRATE (migrate-call.ts), on the sweeper's own connections for the sweeper. */
  private migrate(db: number, keys: readonly string[], timeoutMs: number | undefined, sweep: boolean): Promise<{ reply: 'OK' | 'NOKEY'; moved: number }> {
    this.stats.migrateCalls++;
    // The sweeper's moves use their own connections, so a client's move never queues behind a
    // sweeper batch on the same socket (only behind the one the source is running).
    const pool = sweep && this.sweepSource ? this.sweepSource : this.source;
    const forKey = this.dest.forKey;
    if (forKey !== undefined) return migrateToCluster(pool, this.dest, forKey, db, keys, timeoutMs);
    if (this.dest.sourceSlot !== undefined && keys.length > 1) return migrateFromCluster(pool, this.dest, this.dest.sourceSlot, db, keys, timeoutMs);
    return migrateKeys(pool, this.dest, db, keys, timeoutMs);
  }

  /**
   * A cluster on either side: the sweep script can't be used (into a cluster it sends a batch to
   * one address; out of one it would run on one master only).
   */
  get groupsByNode(): boolean {
    return this.dest.forKey !== undefined || this.dest.sourceSlot !== undefined;
  }

  /** Moves one batch; resolves (never rejects) to the keys that could not be confirmed absent. */
  private async moveBatch(db: number, keys: string[], how: How): Promise<Map<string, Error>> {
    if (this.proxy !== null && (this.method !== 'migrate' || how.big === true)) return this.moveByProxy(db, keys, how);
    let firstErr: unknown;
    const t0 = performance.now();
    const down = how.origin === 'touch' ? this.path.down() : null;
    try {
      if (down !== null) throw new Error(down);
      const r = await this.migrate(db, keys, how.timeoutMs, how.origin === 'sweep');
      this.path.result(performance.now() - t0, null, how.timeoutMs);
      this.onMigrate?.(performance.now() - t0, keys.length, true);
      if (how.cache) for (let j = 0; j < keys.length; j++) this.markAbsent(db, keys[j]!);
      this.countMoved(r.moved, keys.length - r.moved, how.origin);
      return NO_FAILURES;
    } catch (e) {
      if (e instanceof ClaimPresent && this.proxy !== null) return this.moveByProxy(db, keys, how);
      if (down === null) {
        this.path.result(performance.now() - t0, e, how.timeoutMs);
        this.onMigrate?.(performance.now() - t0, keys.length, false);
      }
      firstErr = e;
    }
    // Uncertain: MIGRATE reports only its first error and may have moved some keys.
    const fails = new Map<string, Error>();
    await Promise.all(
      keys.map(async (k) => {
        try {
          await this.resolveKey(db, k, firstErr, how);
        } catch (e) {
          fails.set(k, e as Error);
        }
      }),
    );
    return fails;
  }

  /** Moves a batch through the proxy-side protocol; resolves to the keys not confirmed absent. */
  private async moveByProxy(db: number, keys: string[], how: How): Promise<Map<string, Error>> {
    const r = await this.proxy!.move(db, keys.map((k) => Buffer.from(k, 'latin1')), how.big === true);
    this.countProxyResult(r, how.origin);
    if (how.cache) for (const k of keys) if (!r.fails.has(k)) this.markAbsent(db, k);
    return r.fails.size === 0 ? NO_FAILURES : r.fails;
  }

  /** Books a proxy-side result in the stats: moved, found absent, and each failure by kind. */
  private countProxyResult(r: ProxyMoveResult, origin: 'touch' | 'sweep'): void {
    this.countMoved(r.moved, r.absent, origin);
    for (const e of r.fails.values()) {
      this.stats.failures++;
      this.countError(classify(e).kind);
      this.lastErrorText = e.message;
    }
  }

  /**
   * One sweeper step: with MIGRATE, a script in the source (migrate-sweep.ts); with a proxy-side
   * method, a claim step (proxy-sweep.ts). Throws when the script cannot run, so the caller falls back.
   */
  sweepStep(
    db: number,
    cursor: string,
    count: number,
    bigKeyBytes: number,
    timeoutMs: number,
    touch: TouchSignal = NO_TOUCH_SIGNAL,
    match: Buffer = NO_MATCH,
  ): Promise<SweepStepResult> {
    const pool = this.sweepSource ?? this.source;
    if (this.proxySweep !== null && this.method !== 'migrate') return this.proxySweep.step(db, pool, cursor, count, touch, match);
    return migrateSweepStep(this.migrateSweep, pool, this.dest, { db, cursor, count, bigKeyBytes, timeoutMs, touch, match });
  }

  /** Ends the sweeper's proxy-side batches in flight (a db's end, a pause, a stop). */
  async endSweepSteps(): Promise<void> {
    await this.proxySweep?.flush();
  }

  private readonly migrateSweep: MigrateSweepHost = {
    migrated: (ms, keys, ok) => {
      this.stats.migrateCalls++;
      this.onMigrate?.(ms, keys, ok);
    },
    failedWith: (text) => (this.lastErrorText = text),
    movedBySweeper: (moved) => this.countMoved(moved, 0, 'sweep'),
    resolve: (db, key, firstErr) => this.resolveKey(db, key, firstErr, { cache: false, origin: 'sweep' }),
    sweepClaims: (db, claims) => this.sweepClaims(db, claims),
  };

  /**
   * Keys the sweeper found claimed (a proxy-side move in flight elsewhere, or abandoned by a
   * process that died): through the protocol, which waits or takes over. Returns the failures.
   */
  async sweepClaims(db: number, claims: readonly Buffer[]): Promise<number> {
    if (claims.length === 0 || this.proxy === null) return 0;
    const fails = await this.ensureRefs(
      claims.map((k) => ({ db, key: k.toString('latin1') })),
      { cache: false, origin: 'sweep' },
    ).then(() => 0, () => 1);
    return fails;
  }

  private countMoved(moved: number, absent: number, origin: 'touch' | 'sweep'): void {
    countMoved(this.stats, moved, absent, origin);
  }

  private markAbsent(db: number, key: string): void {
    this.cache.add(db, key);
  }

  private countError(kind: MoveErrorKind): void {
    countError(this.stats, kind);
  }

  /** Probe-and-retry for one key after an uncertain MIGRATE (docs/DESIGN.md rule 4). */
  async resolveKey(db: number, key: string, firstErr: unknown, how: How = TOUCH): Promise<void> {
    const markAbsent = (): void => {
      if (how.cache) this.markAbsent(db, key);
    };
    let cause = classify(firstErr);
    this.countError(cause.kind);
    if (cause.kind === 'timeout' || cause.kind === 'source-unavailable') {
      // The source itself did not answer (hung, or gone): a probe would wait just as long.
      // Nothing is forwarded; the key stays where it is, and the next touch resolves it.
      this.stats.failures++;
      throw new MoveError('ESOURCE', ErrorText.sourceUnavailable(cause.text));
    }
    const kb = Buffer.from(key, 'latin1');
    // A client waits for its key: probe and retry. The sweeper only probes (resolving uncertain
    // outcomes); a key still only in the source waits for its next pass. After a MIGRATE that ran
    // into its timeout (the breaker is open) a retry would hold the source as long again: probe only.
    const attempts = how.origin === 'sweep' || this.path.open ? 1 : 3;
    for (let attempt = 0; attempt < attempts; attempt++) {
      this.stats.probes++;
      let inSource: number;
      let claimed: number;
      let inTarget: number;
      try {
        // K and its claim key in one transaction: a claimed K is present, only renamed.
        const r = await this.source.db(db).multi().exists(kb).exists(moveKeys(kb).claim).exec();
        if (r === null) throw new Error('the probe transaction was aborted');
        for (const [err] of r) if (err) throw err;
        inSource = Number(r[0]![1]);
        claimed = Number(r[1]![1]);
      } catch (e) {
        this.stats.failures++;
        throw new MoveError('ESOURCE', ErrorText.sourceUnavailable(classify(e).text));
      }
      if (inSource + claimed === 0) {
        markAbsent();
        return;
      }
      if (this.proxy !== null && claimed > 0) {
        // Claimed by a proxy-side move: only the protocol may resolve it (wait or take over).
        const fails = await this.moveByProxy(db, [key], how);
        throwFor(fails, key);
        return;
      }
      try {
        inTarget = await this.target.db(db).exists(kb);
      } catch (e) {
        this.stats.failures++;
        throw new MoveError('ETARGET', ErrorText.targetUnavailable(classify(e).text));
      }
      if (inTarget === 1) {
        // In both: a leftover of an interrupted move (identical: the source copy was frozen)
        // or newer than a copy an old snapshot brought back. The target copy wins (rule 3),
        // once a cluster master's replica has it too (migrate-cluster.ts).
        await this.replicated(key);
        await this.deleteFromSource(db, kb);
        this.stats.resolvedBoth++;
        markAbsent();
        return;
      }
      if (attempt === attempts - 1) break;
      if (this.path.open) break;
      const t0 = performance.now();
      try {
        const r = await this.migrate(db, [key], how.timeoutMs, how.origin === 'sweep');
        this.path.result(performance.now() - t0, null, how.timeoutMs);
        this.countMoved(r.moved, 1 - r.moved, how.origin);
        markAbsent();
        return;
      } catch (e) {
        this.path.result(performance.now() - t0, e, how.timeoutMs);
        cause = classify(e);
        this.countError(cause.kind);
      }
    }
    this.stats.failures++;
    if (cause.kind === 'oom') throw new MoveError('EOOM', ErrorText.targetOom(key));
    if (cause.kind === 'source-unavailable') {
      throw new MoveError('ESOURCE', ErrorText.sourceUnavailable(cause.text));
    }
    throw new MoveError('EMOVE', ErrorText.moveFailed(key, cause.text));
  }

  /** A cluster master with replicas: WAIT for one before the source copy of `key` goes. */
  private async replicated(key: string): Promise<void> {
    const { forKey, hasReplicas, replicated } = this.dest;
    const node = forKey?.(key) ?? null;
    if (node === null || replicated === undefined || hasReplicas?.(node) !== true) return;
    try {
      await replicated(node);
    } catch (e) {
      this.stats.failures++;
      this.countError('replica');
      throw new MoveError('EMOVE', ErrorText.moveFailed(key, classify(e).text));
    }
  }

  private async deleteFromSource(db: number, kb: Buffer): Promise<void> {
    try {
      await this.source.db(db).del(kb);
    } catch (e) {
      throw new MoveError('ESOURCE', ErrorText.sourceUnavailable(classify(e).text));
    }
  }
}
