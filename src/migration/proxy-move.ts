/**
 * The proxy-side move (docs/DESIGN.md "Moves", steps 1-7): for pairs where MIGRATE can't be used,
 * rehome carries each key itself, and the protocol keeps rules 1-4 against other movers, crashes
 * and stalls. Each step is one atomic script (move-scripts.ts):
 *
 *   source: claim K -> CK + record ──> target: stage chunk 0..n-1 ──> target: publish ──> source: release
 *           (or take over a lapsed         (dump: one chunk, staged      OK / EXISTS / MARKED /       only after OK,
 *            lease; HELD: wait)             and published together)      EXPIRED -> release           EXISTS, MARKED,
 *                                                                        FAIL / LATE -> keep claim    EXPIRED; token ours
 *
 * A key is confirmed absent from the source once the claim script finds neither K nor CK (ABSENT),
 * or once this mover released its claim after a publish that leaves the target's copy in charge.
 * Two ways to copy: `dump` (DUMP of the claim key, RESTORE in the target) and `copy` (the type-aware
 * reader of typed-copy.ts, chunk by chunk into staging). Keys of bigKeyBytes or more always take the
 * chunked copy, so no single step holds either server for a whole big value.
 */
import type { ServerFeatures } from './typed-copy-features.js';
import { ErrorText, MoveError } from '../errors.js';
import type { ControlPool } from '../upstream/control.js';
import { Copier, type Carried, type Outcome } from './move-copy.js';
import { overMarkers } from './drop-markers.js';
import { moveKeys } from './move-keys.js';
import { CLAIM_SCRIPT, EXPIRE_MARKERS_SCRIPT, RELEASE_SCRIPT } from './move-scripts.js';
import { TargetDurability } from './target-durability.js';

/** How a proxy-side move copies a key. */
export type ProxyMethod = 'dump' | 'copy';

/** Settings of the proxy-side move. */
export interface ProxyMoveOptions {
  method: ProxyMethod;
  /** Names this process in claim records (its own earlier claims are taken over at once). */
  owner: string;
  /** A claim's lease, on the source's clock; long copies renew it. */
  leaseMs: number;
  /** Keys at least this large (MEMORY USAGE) take the chunked copy. */
  bigKeyBytes: number;
  /** WAITAOF on the target before a release (target-durability.ts). */
  waitAof: 'auto' | 'on' | 'off';
  /** About this many bytes per chunk of a chunked copy. */
  chunkBytes: number;
  /**
   * A publish whose lease lapsed longer ago than this (target clock) is refused: it bounds how
   * late a stalled mover can publish, so markers can be dropped that long after the migration ends.
   */
  lateWindowMs: number;
  /** Longest a client's move waits for another process's claim before failing. */
  maxWaitMs: number;
  /** What the target accepts (hash-field TTLs, stream ids and groups): the type-aware copy's options. */
  target: ServerFeatures;
  /** A cluster target: a key's slot (publishes are grouped by slot: move-copy.ts). */
  slotOf?: ((key: Buffer) => number) | undefined;
  /** A cluster target: WAIT for a replica of the masters published keys went to, before a release. */
  replicated?: ((keys: readonly Buffer[]) => Promise<void>) | undefined;
  /** Clients' requests handled so far by this process: chunked copies give way while it grows (move-copy.ts). */
  clientRequests?: (() => number) | undefined;
}

export const PROXY_MOVE_DEFAULTS = {
  leaseMs: 10_000,
  // Each chunk is read, parsed and sent by rehome in one go: small ones keep the event loop free
  // for clients' requests while a big key moves (bench/big-keys.mjs).
  chunkBytes: 64 * 1024,
  lateWindowMs: 60_000,
  maxWaitMs: 30_000,
  waitAof: 'auto',
} as const;

/** Outcomes that let the claim go (step 6). */
export function releases(o: Outcome): boolean {
  return o === 'OK' || o === 'EXISTS' || o === 'MARKED' || o === 'EXPIRED';
}

/** One claim script's answer for one key. */
type ClaimReply = [string, string, string, string, number, Buffer | null, number];

/** The outcome of moving some keys of one db. */
export interface ProxyMoveResult {
  /** Keys published by this mover. */
  moved: number;
  /** Keys found absent (or published by someone else). */
  absent: number;
  /** Keys that could not be confirmed absent (latin1 name -> why). */
  fails: Map<string, Error>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Carries keys from the source to the target through the protocol; see the file comment. */
export class ProxyMove {
  /** Publishes that found the target's copy (or its marker) there first. */
  exists = 0;
  /** Waits for another process's claim. */
  waits = 0;
  /** Claims taken over after their lease lapsed. */
  takeovers = 0;

  /** See expireMarkers(). */
  expireMarkers(): Promise<number> {
    return expireMarkers(this.target, this.opts);
  }

  readonly copier: Copier;
  /** The target's copies on its disk before a release (WAITAOF), where that applies. */
  readonly durability: TargetDurability;

  constructor(
    private readonly source: ControlPool,
    readonly target: ControlPool,
    readonly opts: ProxyMoveOptions,
  ) {
    this.copier = new Copier(source, target, opts);
    this.durability = new TargetDurability(target, opts.waitAof, opts.replicated);
  }

  /**
   * Moves `keys` of db `db` (a client's touch, or the sweeper's big and claimed keys); resolves
   * (never rejects) with the keys that could not be confirmed absent. `chunked` forces the
   * chunked copy (big keys).
   */
  async move(db: number, keys: readonly Buffer[], chunked = false): Promise<ProxyMoveResult> {
    const res: ProxyMoveResult = { moved: 0, absent: 0, fails: new Map() };
    const started = Date.now();
    let pending = [...keys];
    let pause = 5;
    while (pending.length > 0) {
      let held: Buffer[];
      try {
        held = await this.round(db, pending, chunked, res);
      } catch (e) {
        for (const k of pending) res.fails.set(k.toString('latin1'), asMoveError(e, k));
        return res;
      }
      if (held.length === 0) break;
      const waited = Date.now() - started;
      if (waited > this.opts.maxWaitMs) {
        for (const k of held) res.fails.set(k.toString('latin1'), new MoveError('EMOVE', ErrorText.claimHeld(k.toString('latin1'), waited)));
        break;
      }
      // Another process carries these keys: wait for its release, or its lease to lapse (the
      // claim script then takes over). No connection is held while waiting.
      this.waits += held.length;
      await sleep(pause);
      pause = Math.min(pause * 2, 200);
      pending = held;
    }
    return res;
  }

  /** One pass of the protocol over `keys`; returns the keys held by another mover. */
  private async round(db: number, keys: Buffer[], chunked: boolean, res: ProxyMoveResult): Promise<Buffer[]> {
    const names = keys.map(moveKeys);
    const args: Buffer[] = [];
    for (const n of names) args.push(n.key, n.claim, n.record);
    const limit = this.opts.method === 'dump' && !chunked ? this.opts.bigKeyBytes : -1;
    const replies = (await this.source.db(db).callBuffer('EVAL', CLAIM_SCRIPT, args.length, ...args, this.opts.owner, String(this.opts.leaseMs), String(limit))) as ClaimReply[];
    const held: Buffer[] = [];
    const carried: Carried[] = [];
    for (let i = 0; i < replies.length; i++) {
      const [st, tok, deadline, , lease, payload] = replies[i]!;
      const status = st.toString();
      if (status === 'ABSENT') res.absent++;
      else if (status === 'HELD') held.push(keys[i]!);
      else {
        if (status === 'TAKEN') this.takeovers++;
        carried.push({ names: names[i]!, tok: tok.toString(), deadline: deadline.toString(), leaseEnd: Number(lease), payload: payload ?? null });
      }
    }
    if (carried.length === 0) return held;
    for (const k of await this.publishAndRelease(db, carried, res)) held.push(k);
    return held;
  }

  /**
   * Steps 5 and 6 for claimed keys: publish them in the target, then release what the outcomes
   * let go. Returns the keys still claimed by another mover. A publish that fails is uncertain
   * (the target did not answer): the claims stay ours, and the next attempt, ours or another
   * process's once the lease lapses, takes them over.
   */
  private async publishAndRelease(db: number, carried: readonly Carried[], res: ProxyMoveResult): Promise<Buffer[]> {
    let outs: Outcome[];
    try {
      outs = await this.copier.publish(db, carried);
      await this.durability.wait(db, carried.map((c) => c.names.key));
    } catch (e) {
      failAll(res, carried, e);
      return [];
    }
    return (await this.release(db, carried, outs, res)).stillClaimed;
  }

  /**
   * Books each publish outcome and releases the claims it lets go (step 6): after OK, EXISTS,
   * MARKED or EXPIRED, and only where the token is still ours. A claim taken over meanwhile is
   * released by its new mover, which finds the published copy; until then the key is not absent.
   */
  private async release(db: number, carried: readonly Carried[], outs: readonly Outcome[], res: ProxyMoveResult): Promise<{ stillClaimed: Buffer[] }> {
    const go: Carried[] = [];
    carried.forEach((c, i) => {
      const out = outs[i]!;
      const name = c.names.key.toString('latin1');
      if (!releases(out)) {
        res.fails.set(name, failure(out, name));
        return;
      }
      if (out === 'OK') res.moved++;
      else {
        res.absent++;
        if (out !== 'EXPIRED') this.exists++;
      }
      go.push(c);
    });
    if (go.length === 0) return { stillClaimed: [] };
    const src = this.source.db(db);
    const rargs: Buffer[] = [];
    for (const c of go) rargs.push(c.names.claim, c.names.record);
    const n = Number(await src.eval(RELEASE_SCRIPT, rargs.length, ...rargs, ...go.map((c) => c.tok)));
    if (n === go.length) return { stillClaimed: [] };
    // Which ones: K and CK in one EXISTS (one atomic look at both, as the gate needs).
    const p = src.pipeline();
    for (const c of go) p.exists(c.names.key, c.names.claim);
    const found = (await p.exec()) ?? [];
    return { stillClaimed: go.filter((_, j) => Number(found[j]?.[1] ?? 1) > 0).map((c) => c.names.key) };
  }
}

/**
 * Once the migration has drained: every publish-once marker in the target expires after the
 * late-publish window plus a lease (see EXPIRE_MARKERS_SCRIPT for why that is safe then, and not
 * before). Returns how many markers were given the TTL.
 */
export async function expireMarkers(target: ControlPool, opts: Pick<ProxyMoveOptions, 'lateWindowMs' | 'leaseMs'>): Promise<number> {
  return overMarkers(target, EXPIRE_MARKERS_SCRIPT, String(opts.lateWindowMs + opts.leaseMs));
}

/** The error a client sees for an outcome that keeps the claim. */
export function failure(out: Outcome, name: string): MoveError {
  if (out === 'LATE') return new MoveError('EMOVE', ErrorText.moveFailed(name, 'the move stalled past its lease; the next attempt takes it over'));
  if (/OOM/.test(out)) return new MoveError('EOOM', ErrorText.targetOom(name));
  return new MoveError('EMOVE', ErrorText.moveFailed(name, out.replace(/^FAIL /, '')));
}

/** Every carried key fails with `e` (its claim stays for the next mover). */
function failAll(res: ProxyMoveResult, carried: readonly Carried[], e: unknown): void {
  for (const c of carried) res.fails.set(c.names.key.toString('latin1'), asMoveError(e, c.names.key));
}

/** `e` as the error a client sees for `key`. */
export function asMoveError(e: unknown, key: Buffer): MoveError {
  if (e instanceof MoveError) return e;
  const text = e instanceof Error ? e.message : String(e);
  const name = key.toString('latin1');
  if (/OOM/.test(text)) return new MoveError('EOOM', ErrorText.targetOom(name));
  return new MoveError('EMOVE', ErrorText.moveFailed(name, text));
}
