/**
 * The background sweeper: drains keys nobody touches. It SCANs every db of the source that holds
 * keys and moves what it finds with `MIGRATE "" ... KEYS` through the mover (single-flight with
 * client moves, same probing after any error).
 *
 * Batch size adapts so one MIGRATE blocks the source for about `budgetMs`: after each batch the
 * per-key cost is measured and the next batch is budget / cost keys (bounded). Keys whose size
 * (MEMORY USAGE) passes `bigKeyBytes` are moved alone, with a timeout that fits their size.
 *
 * Several proxies on one pair: only the holder of the lease sweeps. The lease is a name on one of
 * the sweeper's own source connections, `rehome-sweeper-lease:<expiry ms, source clock>`, renewed
 * while sweeping; it lapses when the holder stops renewing or its connection closes. Two sweepers
 * at once are still safe (MIGRATE is atomic in the source), only wasteful; the lower client id
 * keeps the lease when two take it together.
 */
import type { Redis } from 'ioredis';
import type { ControlPool } from '../upstream/control.js';
import type { Mover } from './mover.js';
import { RESERVED_PREFIX } from '../phase/phase.js';
import { CLAIM_PATTERN, claimedKey } from './move-keys.js';
import { inScope, isEverything, type Scope } from '../phase/scope.js';
import { parseIdentity, visibleKeyspace } from './source-watch.js';

export type SweeperState = 'starting' | 'sweeping' | 'paused' | 'standby' | 'drained' | 'stopped';

/** How the sweeper paces itself. */
export interface SweeperOptions {
  /** Longest a single MIGRATE should block the source. */
  budgetMs: number;
  /** Keys per second at most (0: no limit). */
  rate: number;
  minBatch: number;
  maxBatch: number;
  /** Keys at least this large (MEMORY USAGE) are moved alone. */
  bigKeyBytes: number;
  /** MIGRATE timeout for ordinary batches. */
  migrateTimeoutMs: number;
  /** Bytes per second assumed when sizing a big key's timeout. */
  bigKeyBytesPerSec: number;
  leaseMs: number;
  /** Keyspace re-check interval once a pass finds nothing. */
  idleMs: number;
  /**
   * While clients' first touches are seen (or were, within the last half second), a step holds
   * the source for about this long instead of `budgetMs`: a touch waits behind at most that.
   */
  touchBudgetMs: number;
  /**
   * A canary's scope (scope.ts): only its dbs are swept, one SCAN MATCH pass per pattern, and a
   * pass that finds no key of it has drained the scope. Null: every key of every db.
   */
  scope?: Scope | null;
  /**
   * Keys not to move (the return sweep of a narrowed scope skips the keys still in scope): they
   * are told apart in the proxy, so steps take the split path.
   */
  exclude?: Scope | null;
}

export const SWEEPER_DEFAULTS: SweeperOptions = {
  budgetMs: 20,
  rate: 0,
  minBatch: 10,
  maxBatch: 2000,
  bigKeyBytes: 8 * 1024 * 1024,
  migrateTimeoutMs: 5_000,
  bigKeyBytesPerSec: 20 * 1024 * 1024,
  leaseMs: 10_000,
  idleMs: 500,
  touchBudgetMs: 0.5,
};

/** How long after the last touch seen the sweeper keeps taking small steps. */
const TOUCH_RECENT_MS = 500;

/** Longest the sweeper waits for this process's own touches to pause before a step. */
const GIVE_WAY_MAX_MS = 5;

/**
 * A pause in this process's touches this long lets a step go (touch-traffic.ts: a cold reader's
 * next touch follows its previous one within a fraction of a millisecond).
 */
const TOUCH_GAP_MS = 1;

/** A key the sweeper moved alone because of its size. */
export interface BigKeyReport {
  db: number;
  key: string;
  bytes: number;
  ms: number;
  ok: boolean;
}

const LEASE_PREFIX = 'rehome-sweeper-lease:';

/** A pass without SCAN MATCH. */
const NO_MATCH = Buffer.alloc(0);

/** rehome plan's throwaway probe keys: never swept. */
const PROBE_PREFIX = Buffer.from(RESERVED_PREFIX);

/**
 * The pause after a step whose keys could not be moved: 0.5 s, doubling, at most 5 s. A step that
 * fails costs the old server one batch, so trying every 5 s is cheap; a longer pause would leave
 * an operator who has just made room on the new server waiting for the sweep to resume.
 */
export function nextBackoffMs(prevMs: number): number {
  return Math.min(5_000, prevMs === 0 ? 500 : prevMs * 2);
}

/** Background mover of untouched keys; see the file comment. */
export class Sweeper {
  state: SweeperState = 'starting';
  pauseReason = '';
  batchSize: number;
  readonly bigKeys: BigKeyReport[] = [];
  bigKeysTotal = 0;
  /** Steps taken small because clients were touching keys (touches first). */
  smallSteps = 0;
  errors = 0;
  private lastTouchSeen = -Infinity;
  lastError = '';
  private stopped = false;
  private wake: (() => void) | null = null;
  private conns = new Map<number, Redis>();
  private leaseConn: Redis | null = null;
  private leaseHeld = false;
  private rateWindowStart = 0;
  private rateWindowKeys = 0;
  private perKeyMs = 0;
  private scriptOk = true;
  private backoffMs = 0;
  private readonly done: Promise<void>;

  constructor(
    private readonly source: ControlPool,
    private readonly mover: Mover,
    readonly opts: SweeperOptions,
    private readonly log: (line: string) => void,
    private readonly onDrained: () => void,
    /** Why it starts paused (the fleet's pause, src/phase/fleet-record.ts); null: it starts. */
    startPaused: string | null = null,
  ) {
    this.batchSize = Math.min(100, opts.maxBatch);
    if (opts.exclude) this.scriptOk = false;
    if (startPaused !== null) {
      this.state = 'paused';
      this.pauseReason = startPaused;
    }
    this.done = this.run();
  }

  /** Pauses after the current batch. */
  pause(reason = 'paused by operator'): void {
    if (this.state === 'drained' || this.state === 'stopped') return;
    this.state = 'paused';
    this.pauseReason = reason;
    this.log(`sweeper paused: ${reason}`);
    this.kick();
  }

  resume(): void {
    if (this.state !== 'paused') return;
    this.state = 'starting';
    this.pauseReason = '';
    this.log('sweeper resumed');
    this.kick();
  }

  setRate(rate: number): void {
    this.opts.rate = rate;
    this.rateWindowStart = 0;
    this.batchSize = Math.min(Math.max(this.batchSize, this.opts.minBatch), this.rateCap());
    this.kick();
  }

  /**
   * Follows the fleet's settings (stored with the phase, read by every process): the rate, and
   * paused with its reason or not. Called when they change; a drained sweeper stays drained.
   */
  follow(s: { rate: number; paused: string | null }): void {
    if (s.rate !== this.opts.rate) this.setRate(s.rate);
    if (s.paused !== null && (this.state !== 'paused' || this.pauseReason !== s.paused)) this.pause(s.paused);
    else if (s.paused === null) this.resume();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.state !== 'drained') this.state = 'stopped';
    this.kick();
    await this.done.catch(() => {});
    const all = [...this.conns.values()];
    if (this.leaseConn) all.push(this.leaseConn);
    this.conns.clear();
    this.leaseConn = null;
    await Promise.all(all.map((c) => c.quit().catch(() => c.disconnect())));
  }

  private kick(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private conn(db: number): Redis {
    let c = this.conns.get(db);
    // A fenced connection whose check failed at a reconnect (the phase could not be read
    // meanwhile, or moved on) has ended for good: open a new one.
    if (!c || c.status === 'end') {
      c = this.source.dedicated(db);
      this.conns.set(db, c);
    }
    return c;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.state === 'paused') {
        await this.sleep(60_000);
        continue;
      }
      try {
        // Every proxy sees the source empty, lease holder or not.
        const ks = await visibleKeyspace(this.conn(0));
        const scope = this.opts.scope ?? null;
        const dbs = Object.keys(ks).map(Number).filter((db) => scope === null || scope.dbs.length === 0 || scope.dbs.includes(db));
        if (dbs.length === 0) {
          // A scope's dbs all empty: nothing of it is left, whatever the other dbs hold.
          if (scope === null && !(await this.confirmEmpty())) {
            await this.sleep(500);
            continue;
          }
          this.state = 'drained';
          await this.releaseLease();
          this.onDrained();
          return;
        }
        const leased = await this.holdLease();
        // A pause (operator, source restart) that came while this pass looked at the source
        // stands: it is not overwritten by standby or sweeping.
        if ((this.state as SweeperState) === 'paused') continue;
        if (!leased) {
          if (this.state !== 'standby') this.log('sweeper on standby: another proxy holds the sweep lease');
          this.state = 'standby';
          await this.sleep(this.opts.leaseMs / 3);
          continue;
        }
        if (this.state !== 'sweeping') this.log(`sweeper running over db ${dbs.join(', ')}${scope !== null ? ` (keys ${scope.patterns.length > 0 ? scope.patterns.join(', ') : '*'})` : ''}`);
        this.state = 'sweeping';
        // Nothing creates a key of the scope in the source (keys on both sides are refused), so a
        // whole pass that finds none leaves none behind.
        let seen = 0;
        let whole = true;
        for (const db of dbs) {
          for (const match of this.matches()) {
            seen += await this.sweepDb(db, match);
            if (this.stopped || this.state !== 'sweeping') break;
          }
          if (this.stopped || this.state !== 'sweeping') {
            whole = false;
            break;
          }
        }
        // SCAN MATCH of the scope's patterns can't see claim keys: a proxy-side move abandoned by
        // a process that died holds K renamed. Before calling the scope drained, take those over.
        if (whole && seen === 0 && this.matches()[0] !== NO_MATCH && scope !== null) {
          for (const db of dbs) seen += await this.sweepScopeClaims(db, scope);
        }
        this.lastPassSeen = seen;
        if ((scope !== null || this.opts.exclude) && whole && seen === 0) {
          this.state = 'drained';
          await this.releaseLease();
          this.onDrained();
          return;
        }
      } catch (e) {
        this.errors++;
        this.lastError = (e as Error).message;
        this.log(`sweeper: ${this.lastError}; retrying`);
        await this.sleep(1_000);
      }
    }
  }

  /**
   * An empty keyspace was just read: true if it holds. A source loading its data (just restarted)
   * answers INFO with the keys loaded so far, and none at first (a snapshot's expired keys are
   * skipped, dbs load one after another): empty counts only when read while one and the same
   * server process was up and done loading (a primary loads only when it starts).
   */
  private async confirmEmpty(): Promise<boolean> {
    const c = this.conn(0);
    const before = await c.info();
    if (/^loading:1/m.test(before)) return false;
    if (Object.keys(await visibleKeyspace(c)).length > 0) return false;
    return parseIdentity(await c.info('server')).runId === parseIdentity(before).runId;
  }

  /** Claims of keys in `scope` in one db, handed to the protocol (which takes them over). */
  private async sweepScopeClaims(db: number, scope: Scope): Promise<number> {
    const c = this.conn(db);
    let cursor = '0';
    let n = 0;
    do {
      const [next, found] = (await c.callBuffer('SCAN', cursor, 'MATCH', CLAIM_PATTERN, 'COUNT', '1000')) as [Buffer, Buffer[]];
      cursor = next.toString('latin1');
      const keys = found.map(claimedKey).filter((k): k is Buffer => k !== null && inScope(scope, db, k.toString('latin1')));
      if (keys.length > 0) {
        n += keys.length;
        await this.mover.sweepClaims(db, keys);
      }
    } while (cursor !== '0' && !this.stopped);
    return n;
  }

  /** Keys of the scope found by the last whole pass (status: what is left of a canary's scope). */
  lastPassSeen = -1;

  /** SCAN MATCH patterns of a pass (one empty one: no MATCH). */
  private matches(): Buffer[] {
    const s = this.opts.scope;
    if (!s || isEverything(s) || s.patterns.length === 0) return [NO_MATCH];
    return s.patterns.map((p) => Buffer.from(p, 'latin1'));
  }

  /** One SCAN step and the sizes of what it found (pipelined MEMORY USAGE): the split path. */
  private async scanStep(db: number, cursor: string, match: Buffer): Promise<[string, Buffer[], Buffer[], number[]]> {
    const c = this.conn(db);
    const [next, found] = match.length > 0
      ? ((await c.callBuffer('SCAN', cursor, 'MATCH', match, 'COUNT', String(this.batchSize))) as [Buffer, Buffer[]])
      : await c.scanBuffer(cursor, 'COUNT', this.batchSize);
    const exclude = this.opts.exclude ?? null;
    const keys = found.filter((k) => !k.subarray(0, PROBE_PREFIX.length).equals(PROBE_PREFIX) &&
      (exclude === null || !inScope(exclude, db, k.toString('latin1'))));
    const p = c.pipeline();
    for (const k of keys) p.memory('USAGE', k);
    const sizes = (await p.exec()) ?? [];
    const big: Buffer[] = [];
    const bigSizes: number[] = [];
    keys.forEach((k, i) => {
      const bytes = Number(sizes[i]?.[1] ?? 0);
      if (bytes >= this.opts.bigKeyBytes) {
        big.push(k);
        bigSizes.push(bytes);
      }
    });
    return [String(next), keys, big, bigSizes];
  }

  /**
   * Sweeps one db. Normally each step is one script inside the source (scan, size, migrate: see
   * Mover.sweepStep): one round trip per batch and no key names through the proxy. Where
   * scripts are unavailable, SCAN steps and moves go separately (sweepDbSplit).
   */
  private async sweepDb(db: number, match: Buffer): Promise<number> {
    // A cluster target: the script would MIGRATE a batch to one address; the proxy groups per node.
    if (!this.scriptOk || this.mover.groupsByNode) return this.sweepDbSplit(db, match);
    try {
      return await this.sweepDbSteps(db, match);
    } finally {
      // A proxy-side step leaves its batches in flight for the next one: end them.
      await this.mover.endSweepSteps();
    }
  }

  private async sweepDbSteps(db: number, match: Buffer): Promise<number> {
    let seen = 0;
    let cursor = '0';
    let prevSize = -1;
    let prevGone = -1;
    // The rate counts the keys a step moved, paid before the next one: a scope's SCAN MATCH
    // walks past many keys for each one it moves, and those cost the old server little.
    let moved = 0;
    do {
      if (this.stopped || this.state !== 'sweeping') return seen;
      await this.paceRate(moved);
      await this.giveWay();
      if (this.stopped || this.state !== 'sweeping') return seen;
      const n = this.batchSize;
      const touch = { smallCount: this.smallBatch(), prevSize, prevGone, recent: performance.now() - this.lastTouchSeen < TOUCH_RECENT_MS };
      let step;
      try {
        // A script blocks the source for its whole run: keep MIGRATE's own I/O timeout well
        // under the server's script time limit.
        step = await this.mover.sweepStep(db, cursor, n, this.opts.bigKeyBytes, Math.min(this.opts.migrateTimeoutMs, 2_000), touch, match);
      } catch (e) {
        if (/NOSCRIPT|unknown command|NOPERM|disabled|not allowed/i.test((e as Error).message)) {
          this.scriptOk = false;
          this.log(`sweeper: server-side sweep step unavailable (${(e as Error).message}); moving batches from the proxy`);
          return seen + (await this.sweepDbSplit(db, match));
        }
        throw e;
      }
      seen += step.seen;
      moved = step.moved;
      cursor = step.cursor;
      prevSize = step.size;
      prevGone = step.gone;
      if (step.touched > 0) this.lastTouchSeen = performance.now();
      if (step.count < n) this.smallSteps++;
      if (step.failed > 0) {
        this.errors += step.failed;
        this.lastError = `${step.failed} keys could not be moved; they stay in the source for the next pass`;
        // The target refuses (out of memory, unreachable...): back off (nextBackoffMs).
        this.backoffMs = nextBackoffMs(this.backoffMs);
        this.log(`sweeper: ${step.failed} keys not moved (${this.mover.lastErrorText}); backing off ${this.backoffMs} ms`);
        await this.sleep(this.backoffMs);
      } else {
        this.backoffMs = 0;
      }
      // Sized by the time the step held the source (its own clock), not by the round trip.
      if (step.moved > 0) this.adapt(step.heldMs, step.count);
      for (let i = 0; i < step.big.length; i++) {
        await this.moveBig(db, step.big[i]!.toString('latin1'), Number(step.bigSizes[i] ?? 0));
      }
      // Big keys moved alone change the db's size too: they are not clients' touches.
      if (step.big.length > 0) prevSize = -1;
      await this.renewLease();
    } while (cursor !== '0');
    return seen;
  }

  private async sweepDbSplit(db: number, match: Buffer): Promise<number> {
    // While one batch is being moved, the next SCAN step already runs (on another connection),
    // so the source is never idle waiting for the proxy.
    let seen = 0;
    let step = this.scanStep(db, '0', match);
    for (;;) {
      const [cursor, keys, big, bigSizes] = await step;
      if (this.stopped || this.state !== 'sweeping') return seen;
      seen += keys.length;
      if (cursor !== '0') {
        step = this.scanStep(db, cursor, match);
        step.catch(() => {}); // awaited on the next turn
      }
      if (keys.length > 0) await this.moveKeys(db, keys, big, bigSizes);
      await this.renewLease();
      if (cursor === '0') break;
    }
    return seen;
  }

  private async moveKeys(db: number, raw: Buffer[], bigRaw: Buffer[], bigSizes: number[]): Promise<void> {
    const bigSet = new Set(bigRaw.map((k) => k.toString('latin1')));
    const small: string[] = [];
    for (const k of raw) {
      const key = k.toString('latin1');
      if (!bigSet.has(key)) small.push(key);
    }
    const big = bigRaw.map((k, i) => ({ key: k.toString('latin1'), bytes: Number(bigSizes[i] ?? 0) }));
    if (small.length > 0) {
      await this.paceRate(small.length);
      // Paused (or stopped) while waiting for the rate: move nothing more; the next pass sees
      // these keys again.
      if (this.state !== 'sweeping' || this.stopped) return;
      const t0 = performance.now();
      await this.mover.sweep(db, small).catch((e: Error) => {
        this.errors++;
        this.lastError = e.message;
      });
      this.adapt(performance.now() - t0, small.length);
    }
    for (const b of big) await this.moveBig(db, b.key, b.bytes);
  }

  /** Moves one big key alone, with a MIGRATE timeout sized for it, and reports it. */
  private async moveBig(db: number, key: string, bytes: number): Promise<void> {
    const b = { key, bytes };
    {
      await this.paceRate(1);
      if (this.state !== 'sweeping' || this.stopped) return;
      const timeoutMs = Math.max(
        this.opts.migrateTimeoutMs,
        Math.ceil((b.bytes / this.opts.bigKeyBytesPerSec) * 1000) * 2,
      );
      const t0 = performance.now();
      let ok = true;
      await this.mover.sweepBig(db, b.key, timeoutMs).catch((e: Error) => {
        ok = false;
        this.errors++;
        this.lastError = e.message;
      });
      const ms = performance.now() - t0;
      this.bigKeysTotal++;
      if (this.bigKeys.length < 100) this.bigKeys.push({ db, key: b.key, bytes: b.bytes, ms, ok });
      this.log(
        `sweeper: big key db ${db} '${b.key.slice(0, 80)}' (${(b.bytes / 1048576).toFixed(1)} MB) moved alone in ${ms.toFixed(0)} ms${ok ? '' : ' (failed, left in source)'}`,
      );
    }
  }

  /**
   * Touches first, in this process: a client's move would wait behind a step that reached the
   * source before it. Wait for a pause in them (briefly: they may keep coming).
   */
  private async giveWay(): Promise<void> {
    await this.mover.touches.quiet(TOUCH_GAP_MS, GIVE_WAY_MAX_MS);
  }

  /** A step's batch while clients touch keys: about touchBudgetMs of the source's time. */
  private smallBatch(): number {
    const want = Math.floor(this.opts.touchBudgetMs / Math.max(this.perKeyMs, 0.001));
    return Math.max(1, Math.min(this.batchSize, want));
  }

  /** Sizes the next batch so one MIGRATE blocks the source for about the budget. */
  private adapt(ms: number, n: number): void {
    const per = ms / n;
    this.perKeyMs = this.perKeyMs === 0 ? per : this.perKeyMs * 0.7 + per * 0.3;
    const want = Math.floor(this.opts.budgetMs / Math.max(this.perKeyMs, 0.001));
    this.batchSize = Math.min(Math.max(this.opts.minBatch, Math.min(this.opts.maxBatch, want)), this.rateCap());
  }

  private async paceRate(n: number): Promise<void> {
    const rate = this.opts.rate;
    if (rate <= 0) return;
    const now = performance.now();
    if (now - this.rateWindowStart > 1000) {
      this.rateWindowStart = now;
      this.rateWindowKeys = 0;
    }
    this.rateWindowKeys += n;
    const due = this.rateWindowStart + (this.rateWindowKeys / rate) * 1000;
    if (due > now) await this.sleep(due - now);
    this.batchSize = Math.min(this.batchSize, this.rateCap());
  }

  /** With a rate limit, batches of a tenth of a second's worth keep the flow smooth. */
  private rateCap(): number {
    const rate = this.opts.rate;
    return rate > 0 ? Math.max(1, Math.ceil(rate / 10)) : Number.MAX_SAFE_INTEGER;
  }

  // ------------------------------------------------------------------ lease

  private async sourceNowMs(c: Redis): Promise<number> {
    const [s, us] = (await c.call('TIME')) as [string, string];
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  }

  /** True when this sweeper holds (or just took) the lease. */
  private async holdLease(): Promise<boolean> {
    if (!this.leaseConn || this.leaseConn.status === 'end') this.leaseConn = this.source.dedicated(0);
    const c = this.leaseConn;
    let list: string;
    let myId: number;
    try {
      myId = Number(await c.client('ID'));
      list = String(await c.call('CLIENT', 'LIST', 'TYPE', 'normal'));
    } catch (e) {
      if (/NOPERM|unknown command|ERR/.test((e as Error).message)) return true; // no way to coordinate: sweep (safe)
      throw e;
    }
    const now = await this.sourceNowMs(c);
    for (const line of list.split('\n')) {
      const id = Number(/(?:^|\s)id=(\d+)/.exec(line)?.[1]);
      const name = /(?:^|\s)name=(\S*)/.exec(line)?.[1] ?? '';
      if (id === myId || !name.startsWith(LEASE_PREFIX)) continue;
      const expiry = Number(name.slice(LEASE_PREFIX.length));
      if (expiry > now && (!this.leaseHeld || id < myId)) {
        if (this.leaseHeld) {
          this.leaseHeld = false;
          await c.client('SETNAME', 'rehome-sweeper-standby');
        }
        return false;
      }
    }
    await c.client('SETNAME', `${LEASE_PREFIX}${now + this.opts.leaseMs}`);
    this.leaseHeld = true;
    return true;
  }

  private lastRenew = 0;

  private async renewLease(): Promise<void> {
    if (!this.leaseHeld || !this.leaseConn) return;
    const t = performance.now();
    if (t - this.lastRenew < this.opts.leaseMs / 3) return;
    this.lastRenew = t;
    if (!(await this.holdLease()) && this.state === 'sweeping') {
      this.state = 'standby';
      this.log('sweeper on standby: another proxy holds the sweep lease');
    }
  }

  private async releaseLease(): Promise<void> {
    if (!this.leaseHeld || !this.leaseConn) return;
    this.leaseHeld = false;
    await this.leaseConn.client('SETNAME', 'rehome-sweeper-done').catch(() => {});
  }
}
