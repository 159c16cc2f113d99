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
import { migrateAuthArgs } from '../upstream/endpoint.js';
import type { KnownAbsentCache } from './absent-cache.js';
import { SWEEP_SCRIPT } from './migrate-scripts.js';
import { moveKeys } from './move-keys.js';
import type { Carried } from './move-copy.js';
import type { ProxyMove, ProxyMoveResult } from './proxy-move.js';

/** How keys move: the source's MIGRATE, or the proxy-side move with one of its copy methods. */
export type MoveMethod = 'migrate' | 'dump' | 'copy';

/** MIGRATE found a claim key of one of its keys: the batch goes through the protocol instead. */
class ClaimPresent extends Error {}
/** Where MIGRATE sends keys, as the source sees the target. */
export interface MigrateDestination {
  host: string;
  port: number;
  username?: string;
  password?: string;
  timeoutMs: number;
  /**
   * A cluster target: the master a key goes to (its slot's), instead of host and port; null
   * while no master serves the slot. Keys of one MIGRATE are grouped per master.
   */
  forKey?: (key: string) => { host: string; port: number } | null;
  /** A cluster target answered MIGRATE with MOVED: the slot map is out of date. */
  moved?: (slot: number, to: { host: string; port: number }) => void;
}

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

/** Every kind of move error the mover counts (errorsByKind's keys; /metrics shows each from 0). */
export const MOVE_ERROR_KINDS = ['oom', 'busykey', 'ioerr', 'timeout', 'source-unavailable', 'target-unavailable', 'path-down', 'error'] as const;

type Kind = (typeof MOVE_ERROR_KINDS)[number];

function classify(err: unknown): { kind: Kind; text: string } {
  const text = err instanceof Error ? err.message : String(err);
  if (/OOM/.test(text)) return { kind: 'oom', text };
  if (/BUSYKEY/.test(text)) return { kind: 'busykey', text };
  if (/IOERR/.test(text)) return { kind: 'ioerr', text };
  if (/timed out/i.test(text)) return { kind: 'timeout', text };
  if (/ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ETIMEDOUT|Connection is closed|Stream isn't writeable|max retries|MaxRetriesPerRequest|ENOTFOUND|EPIPE/i.test(text)) {
    return { kind: 'source-unavailable', text };
  }
  return { kind: 'error', text };
}

/** Who asked for a move and how: touches fill the cache; big keys go in chunks. */
interface How {
  cache: boolean;
  origin: 'touch' | 'sweep';
  timeoutMs?: number | undefined;
  big?: boolean;
}

const TOUCH: How = { cache: true, origin: 'touch' };

/** Shortest time the breaker stays open after a MIGRATE timed out (see Mover.pathDownUntil). */
const PATH_DOWN_MIN_MS = 2_000;

const NO_FAILURES: Map<string, Error> = new Map();

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

const NO_TOUCH_SIGNAL: TouchSignal = { smallCount: 1, prevSize: -1, prevGone: -1, recent: false };

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
}

const NON_ASCII = /[^\x00-\x7f]/;
function notAscii(k: string): boolean {
  return NON_ASCII.test(k);
}

function throwFirst(fails: Map<string, Error>): void {
  for (const e of fails.values()) throw e;
}

function throwFor(fails: Map<string, Error>, key: string): void {
  const e = fails.get(key);
  if (e) throw e;
}

/** Moves keys from the source to the target; see the file comment. */
export class Mover {
  readonly stats: MoverStats = {
    migrateCalls: 0,
    keysMovedOnTouch: 0,
    keysMovedBySweeper: 0,
    keysMoved: 0,
    keysAbsent: 0,
    probes: 0,
    resolvedBoth: 0,
    failures: 0,
    errorsByKind: {},
  };
  /** Keys being moved now, each with the batch that moves it (single-flight). */
  private readonly inflight = new Map<string, { batch: Promise<Map<string, Error>>; key: string }>();
  /**
   * The source holds no key in any db: nothing needs confirming any more (rule 1: the source
   * never gains keys), so gates pass without consulting it.
   */
  drained = false;
  /** The last MIGRATE error text (for logs). */
  lastErrorText = '';
  /**
   * Circuit breaker for the path source -> target: a MIGRATE that failed after running into its
   * timeout held the source for that long, and the next one would too. For one timeout's length
   * (2 s at least) after such a failure, touches do not MIGRATE (their keys are probed and the client gets the
   * error at once); then one MIGRATE tries the path again (half-open) while the others still fail
   * fast. A success closes it.
   */
  private pathDownUntil = 0;
  private pathDownText = '';
  private pathTrying = false;
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
  ) {}

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
      for (const k of keys) this.inflight.set(`${db}:${k}`, { batch, key: k });
      waits.push(batch.then(throwFirst));
      void batch.then(() => {
        for (const k of keys) {
          const id = `${db}:${k}`;
          if (this.inflight.get(id)?.batch === batch) this.inflight.delete(id);
        }
      });
    }
    if (waits.length === 1) return waits[0]!;
    return Promise.all(waits).then(() => undefined);
  }

  private migrateArgs(db: number, keys: ReadonlyArray<string | Buffer>, to: { host: string; port: number }): Array<string | Buffer | number> {
    const d = this.dest;
    const args: Array<string | Buffer | number> = [to.host, to.port];
    args.push(keys.length === 1 ? keys[0]! : '');
    args.push(db, d.timeoutMs, ...migrateAuthArgs(d));
    if (keys.length > 1) {
      args.push('KEYS');
      for (const k of keys) args.push(k);
    }
    return args;
  }

  /**
   * One MIGRATE (single-key or KEYS form), sent in a MULTI after an EXISTS of the same keys: the
   * two run atomically in the source, so on OK `moved` is exactly the number of keys that moved
   * (MIGRATE ... KEYS skips missing keys without saying so). Rejects on any error.
   */
  async migrate(
    db: number,
    keys: readonly string[],
    timeoutMs?: number,
    sweep = false,
  ): Promise<{ reply: 'OK' | 'NOKEY'; moved: number }> {
    const forKey = this.dest.forKey;
    if (forKey === undefined) return this.migrateTo(this.dest, db, keys, timeoutMs, sweep);
    // A cluster target: one MIGRATE per master. A failure part-way leaves the other groups moved
    // or not; the caller probes every key (rule 4), as after any failed MIGRATE.
    const groups = groupByNode(keys, forKey);
    let moved = 0;
    for (const [first, group] of groups) {
      let to = first;
      for (let tries = 0; ; tries++) {
        try {
          moved += (await this.migrateTo(to, db, group, timeoutMs, sweep)).moved;
          break;
        } catch (e) {
          // MOVED/ASK is the node's definite refusal: the RESTOREs it refused did not run and
          // their keys are still in the source (MIGRATE deletes only what the target took). So
          // the same MIGRATE goes where the cluster says, without REPLACE (nothing overwritten).
          const rd = redirectOf(e);
          if (rd === null || tries >= 2) throw e;
          if (!rd.ask) this.dest.moved?.(rd.slot, rd.to);
          to = rd.to;
        }
      }
    }
    return { reply: moved > 0 ? 'OK' : 'NOKEY', moved };
  }

  /** Whether the sweep script can't be used: it sends a batch to one address (cluster: many). */
  get groupsByNode(): boolean {
    return this.dest.forKey !== undefined;
  }

  private async migrateTo(
    to: { host: string; port: number },
    db: number,
    keys: readonly string[],
    timeoutMs: number | undefined,
    sweep: boolean,
  ): Promise<{ reply: 'OK' | 'NOKEY'; moved: number }> {
    this.stats.migrateCalls++;
    // Keys are latin1 strings (one char per byte). ioredis writes strings as UTF-8, which is the
    // same bytes for ASCII, and writes a command of strings in one piece (Buffers go piece by
    // piece); so ASCII keys go as strings, anything else as Buffers.
    const kb: Array<string | Buffer> = keys.some(notAscii)
      ? keys.map((k) => Buffer.from(k, 'latin1'))
      : (keys as string[]);
    const args = this.migrateArgs(db, kb, to);
    if (timeoutMs !== undefined) args[4] = timeoutMs;
    // The sweeper's moves use their own connections, so a client's move never queues behind a
    // sweeper batch on the same socket (only behind the one the source is running).
    const pool = sweep && this.sweepSource ? this.sweepSource : this.source;
    // A claim key (another process's proxy-side move) means K is present, only renamed: MIGRATE
    // would answer NOKEY for it. Checked in the same transaction, so nothing can slip between.
    const cks = kb.map((k) => moveKeys(typeof k === 'string' ? Buffer.from(k, 'latin1') : k).claim);
    const res = await pool.db(db).multi().exists(...kb).exists(...cks).call('MIGRATE', ...args).exec();
    if (res === null) throw new Error('MIGRATE transaction aborted');
    const [ex, claimed, mg] = res;
    if (Number(claimed?.[1] ?? 0) > 0) throw new ClaimPresent('a proxy-side move holds a claim');
    if (mg?.[0]) throw mg[0];
    if (ex?.[0]) throw ex[0];
    const reply = String(mg?.[1]);
    if (reply !== 'OK' && reply !== 'NOKEY') throw new Error(`unexpected MIGRATE reply: ${reply}`);
    return { reply, moved: reply === 'OK' ? Number(ex?.[1] ?? 0) : 0 };
  }

  /** Moves one batch; resolves (never rejects) to the keys that could not be confirmed absent. */
  private async moveBatch(db: number, keys: string[], how: How): Promise<Map<string, Error>> {
    if (this.proxy !== null && (this.method !== 'migrate' || how.big === true)) return this.moveByProxy(db, keys, how);
    let firstErr: unknown;
    const t0 = performance.now();
    const down = how.origin === 'touch' ? this.pathDown() : null;
    try {
      if (down !== null) throw new Error(down);
      const r = await this.migrate(db, keys, how.timeoutMs, how.origin === 'sweep');
      this.pathResult(performance.now() - t0, null, how.timeoutMs);
      this.onMigrate?.(performance.now() - t0, keys.length, true);
      if (how.cache) for (let j = 0; j < keys.length; j++) this.markAbsent(db, keys[j]!);
      this.countMoved(r.moved, keys.length - r.moved, how.origin);
      return NO_FAILURES;
    } catch (e) {
      if (e instanceof ClaimPresent && this.proxy !== null) return this.moveByProxy(db, keys, how);
      if (down === null) {
        this.pathResult(performance.now() - t0, e, how.timeoutMs);
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
   * One sweeper step run entirely inside the source by a script: SCAN one step, size each key,
   * and MIGRATE the small ones (KEYS form, no REPLACE), counting the moved ones by DBSIZE. The
   * script sends the source only what docs/DESIGN.md rule 1 allows (SCAN, probes, MIGRATE) and
   * returns no key names unless MIGRATE failed, when every small key is probed and resolved
   * (rules 3 and 4). Big keys come back to be moved alone. `heldMs` is how long the step held
   * the source, as the source's clock measured it (the batch size adapts to it).
   * Throws when the script cannot run (scripts disabled or denied), so the caller falls back.
   */
  async sweepStep(
    db: number,
    cursor: string,
    count: number,
    bigKeyBytes: number,
    timeoutMs: number,
    touch: TouchSignal = NO_TOUCH_SIGNAL,
  ): Promise<SweepStepResult> {
    const pool = this.sweepSource ?? this.source;
    if (this.proxy !== null && this.method !== 'migrate') return this.proxySweepStep(db, pool, cursor, count);
    const d = this.dest;
    const auth = migrateAuthArgs(d);
    const t0 = performance.now();
    const r = (await pool
      .db(db)
      .callBuffer(
        'EVAL', SWEEP_SCRIPT, '0', cursor, String(count), String(bigKeyBytes), d.host, String(d.port), String(db),
        String(timeoutMs), String(touch.smallCount), String(touch.prevSize), touch.recent ? '1' : '0', String(touch.prevGone), ...auth,
      )) as [Buffer, number, Buffer[], number[], Buffer, Buffer[], number, number, number, number, number, Buffer[], number];
    const [next, moved, big, bigSizes, errBuf, small, heldUs, sent, size, others, used, claims, gone] = r;
    const err = errBuf.toString('latin1');
    if (err !== '') this.lastErrorText = err;
    let failed = 0;
    if (sent > 0) {
      this.stats.migrateCalls++;
      this.onMigrate?.(performance.now() - t0, sent, err === '');
    }
    this.countMoved(moved, 0, 'sweep');
    if (err !== '') {
      // Uncertain (IOERR, BUSYKEY, OOM, part-way): probe and resolve each key.
      const how = { cache: false, origin: 'sweep' as const };
      const firstErr = new Error(err);
      await Promise.all(
        small.map((k) =>
          this.resolveKey(db, k.toString('latin1'), firstErr, how).catch(() => {
            failed++;
          }),
        ),
      );
    }
    failed += await this.sweepClaims(db, claims);
    return {
      cursor: next.toString('latin1'), moved, big, bigSizes, failed, heldMs: heldUs / 1000,
      size, touched: Math.max(0, others), count: used, gone,
    };
  }

  /**
   * The publish and release of the sweeper's previous proxy-side batch, running while the next
   * batch is claimed (two batches in flight, as a pipelined client copy has).
   */
  private finishing: Promise<ProxyMoveResult> | null = null;

  /**
   * The sweeper's step with a proxy-side method (ProxyMove.claimStep/finishStep), in
   * SweepStepResult's terms: moved and failed count the batch finished during this step (the
   * previous one; at a db's last step, this one too).
   */
  private async proxySweepStep(db: number, pool: ControlPool, cursor: string, count: number): Promise<SweepStepResult> {
    const proxy = this.proxy!;
    const st = await proxy.claimStep(db, pool.db(db), cursor, count);
    const prev = this.finishing;
    this.finishing = st.carried.length > 0 ? this.finishInFlight(db, st.carried) : null;
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
      this.countProxyResult(r, 'sweep');
    }
    failed += await this.sweepClaims(db, st.claims);
    return { cursor: st.cursor, moved, big: st.big, bigSizes: st.bigSizes, failed, heldMs: st.heldMs, size: st.size, touched: 0, count, gone: -1 };
  }

  /** finishStep with the batch's keys in flight: a touch of one of them joins it (single-flight). */
  private finishInFlight(db: number, carried: readonly Carried[]): Promise<ProxyMoveResult> {
    const p = this.proxy!.finishStep(db, carried);
    const batch = p.then((r) => r.fails);
    const ids = carried.map((c) => {
      const key = c.names.key.toString('latin1');
      const id = `${db}:${key}`;
      this.inflight.set(id, { batch, key });
      return id;
    });
    void batch.then(() => {
      for (const id of ids) if (this.inflight.get(id)?.batch === batch) this.inflight.delete(id);
    });
    return p;
  }

  /**
   * Keys the sweeper found claimed (a proxy-side move in flight elsewhere, or abandoned by a
   * process that died): through the protocol, which waits or takes over. Returns the failures.
   */
  private async sweepClaims(db: number, claims: readonly Buffer[]): Promise<number> {
    if (claims.length === 0 || this.proxy === null) return 0;
    const fails = await this.ensureRefs(
      claims.map((k) => ({ db, key: k.toString('latin1') })),
      { cache: false, origin: 'sweep' },
    ).then(() => 0, () => 1);
    return fails;
  }

  private countMoved(moved: number, absent: number, origin: 'touch' | 'sweep'): void {
    this.stats.keysMoved += moved;
    this.stats.keysAbsent += absent;
    if (origin === 'sweep') this.stats.keysMovedBySweeper += moved;
    else this.stats.keysMovedOnTouch += moved;
  }

  private markAbsent(db: number, key: string): void {
    this.cache.add(db, key);
  }

  private countError(kind: Kind): void {
    this.stats.errorsByKind[kind] = (this.stats.errorsByKind[kind] ?? 0) + 1;
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
    const attempts = how.origin === 'sweep' || this.pathDownUntil > Date.now() ? 1 : 3;
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
        // or newer than a copy an old snapshot brought back. The target copy wins (rule 3).
        await this.deleteFromSource(db, kb);
        this.stats.resolvedBoth++;
        markAbsent();
        return;
      }
      if (attempt === attempts - 1) break;
      if (this.pathDownUntil > Date.now()) break;
      const t0 = performance.now();
      try {
        const r = await this.migrate(db, [key], how.timeoutMs, how.origin === 'sweep');
        this.pathResult(performance.now() - t0, null, how.timeoutMs);
        this.countMoved(r.moved, 1 - r.moved, how.origin);
        markAbsent();
        return;
      } catch (e) {
        this.pathResult(performance.now() - t0, e, how.timeoutMs);
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

  /** The breaker's error text while it is open (this caller must not MIGRATE), else null. */
  private pathDown(): string | null {
    if (this.pathDownUntil === 0) return null;
    if (Date.now() < this.pathDownUntil || this.pathTrying) return this.pathDownText;
    this.pathTrying = true; // half-open: this caller tries the path
    return null;
  }

  /** Feeds one MIGRATE's outcome to the breaker: a failure that took its whole timeout opens it. */
  private pathResult(ms: number, err: unknown, timeoutMs: number | undefined): void {
    const limit = timeoutMs ?? this.dest.timeoutMs;
    const io = err !== null && classify(err).kind === 'ioerr';
    // A timeout opens it; any I/O error while it is open (the half-open try) keeps it open.
    if (io && (ms >= limit * 0.8 || this.pathDownUntil !== 0)) {
      const window = Math.max(limit, PATH_DOWN_MIN_MS);
      this.pathDownUntil = Date.now() + window;
      this.pathDownText = `IOERR the source's MIGRATE to the target timed out after ${Math.round(ms)} ms; moves are not retried for ${window} ms (${classify(err).text})`;
      this.pathTrying = false;
      this.countError('path-down');
      return;
    }
    if (this.pathDownUntil !== 0 && !io) {
      this.pathDownUntil = 0;
      this.pathTrying = false;
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

/** Keys grouped by the master their slot is on (the first group: a slot no master serves). */
function groupByNode(
  keys: readonly string[],
  forKey: (key: string) => { host: string; port: number } | null,
): Map<{ host: string; port: number }, string[]> {
  const byAddr = new Map<string, { to: { host: string; port: number }; keys: string[] }>();
  for (const k of keys) {
    const to = forKey(k);
    if (to === null) throw new Error(`no master of the cluster serves the slot of key '${k}' (CLUSTERDOWN)`);
    const id = `${to.host}:${to.port}`;
    let g = byAddr.get(id);
    if (g === undefined) byAddr.set(id, (g = { to, keys: [] }));
    g.keys.push(k);
  }
  return new Map([...byAddr.values()].map((g) => [g.to, g.keys]));
}

/** A MOVED or ASK in MIGRATE's error ("Target instance replied with error: MOVED 12 h:p"). */
function redirectOf(e: unknown): { ask: boolean; slot: number; to: { host: string; port: number } } | null {
  const m = /\b(MOVED|ASK) (\d+) (\S+):(\d+)/.exec(e instanceof Error ? e.message : String(e));
  if (m === null) return null;
  return { ask: m[1] === 'ASK', slot: Number(m[2]), to: { host: m[3]!.replace(/^\[|\]$/g, ''), port: Number(m[4]) } };
}
