/**
 * Steps 4-5 of the proxy-side move (docs/DESIGN.md "Moves"): copying claimed keys into the target
 * and publishing them. Two methods:
 *
 *   dump   DUMP of the claim key (taken by the claim script itself), RESTORE in the publish script
 *   copy   the type-aware reader (typed-copy.ts): a key that fits one chunk is staged and
 *          published in one script, batched with others; a bigger one goes chunk by chunk into
 *          its token's staging key (chunk i only where staging holds i), renewing the lease, then
 *          a publish that checks the count
 *
 * A one-chunk copy staged and published in one script is the model's copy-then-publish with
 * nothing in between, which the model allows anyway.
 */
import type { ControlPool } from '../upstream/control.js';
import type { MoveKeys } from './move-keys.js';
import { stagingKeys } from './move-keys.js';
import { PUBLISH_CHUNKS_SCRIPT, PUBLISH_DUMP_SCRIPT, PUBLISH_STAGED_SCRIPT, RENEW_SCRIPT, STAGE_SCRIPT } from './move-scripts.js';
import type { ServerFeatures } from './typed-copy-features.js';
import { copyOptions, readChunks, UnsupportedTypeError, type CopyChunk } from './typed-copy.js';

/** A key this mover holds the claim of. */
export interface Carried {
  names: MoveKeys;
  tok: string;
  /** K's absolute expiry (ms, source clock), '-1' for none. */
  deadline: string;
  /** The lease's end (ms, source clock). */
  leaseEnd: number;
  /** The claim key's DUMP, when the claim script took it. */
  payload: Buffer | null;
  /** A string's value, when the claim script took it (the type-aware copy has nothing to read then). */
  value?: Buffer | null;
}

/** What a publish said: OK, EXISTS, MARKED, EXPIRED, LATE, or FAIL and why. */
export type Outcome = string;

/** How the copier works; see ProxyMoveOptions. */
export interface CopyOptions {
  method: 'dump' | 'copy';
  leaseMs: number;
  chunkBytes: number;
  lateWindowMs: number;
  target: ServerFeatures;
  /**
   * A cluster target: the slot of a key. A publish script may only name keys of one slot, so a
   * batch is published one slot at a time.
   */
  slotOf?: ((key: Buffer) => number) | undefined;
  /** Clients' requests this process has handled so far (a count that only grows): a chunked copy gives way while it grows. */
  clientRequests?: (() => number) | undefined;
}

/**
 * Elements per chunk at most: each is a Buffer to parse and send in one turn of the event loop,
 * and a command for the target to run in one script, while other clients' commands wait. 1000
 * keeps either about a millisecond (a sorted set's ZADD of 1000 members into millions).
 */
const CHUNK_ITEMS = 1_000;

/** Lets the I/O that came in meanwhile (clients' requests and replies) through before the next chunk. */
const yieldToClients = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Longest a chunked copy rests between two chunks while clients are active. */
const GIVE_WAY_MAX_MS = 20;

/**
 * While clients' requests keep coming, a chunked copy rests between chunks as long as the last
 * chunk took (at most GIVE_WAY_MAX_MS): rehome and both servers then spend at most about half
 * their time on the big key, and a client's command rarely finds one of them in the middle of a
 * chunk. With no client, chunks follow each other at once.
 */
class GiveWay {
  private seen: number;
  private since = performance.now();

  constructor(private readonly requests: (() => number) | undefined) {
    this.seen = requests?.() ?? 0;
  }

  async next(): Promise<void> {
    const took = performance.now() - this.since;
    const now = this.requests?.() ?? 0;
    const busy = now !== this.seen;
    this.seen = now;
    if (busy) await sleep(Math.min(GIVE_WAY_MAX_MS, Math.max(1, took)));
    else await yieldToClients();
    this.since = performance.now();
  }
}

/** Staging keys of an abandoned copy disappear after this long without a chunk. */
const STAGING_TTL_MS = 10 * 60_000;

/** A key read so far: its only chunk, or the start of a longer read. */
type Read =
  | { kind: 'one'; chunk: CopyChunk }
  | { kind: 'many'; first: CopyChunk; second: CopyChunk; rest: AsyncGenerator<CopyChunk> }
  | { kind: 'unsupported'; why: string };

/** Copies and publishes claimed keys; see the file comment. */
export class Copier {
  constructor(
    private readonly source: ControlPool,
    private readonly target: ControlPool,
    private readonly opts: CopyOptions,
  ) {}

  /** Publishes every key (in `db`), by its payload where it has one, else by the type-aware copy. */
  async publish(db: number, keys: readonly Carried[]): Promise<Outcome[]> {
    const slotOf = this.opts.slotOf;
    if (slotOf !== undefined && keys.length > 1) {
      const bySlot = new Map<number, number[]>();
      keys.forEach((c, i) => {
        const s = slotOf(c.names.key);
        const g = bySlot.get(s);
        if (g === undefined) bySlot.set(s, [i]);
        else g.push(i);
      });
      if (bySlot.size > 1) {
        const out: Outcome[] = new Array<Outcome>(keys.length);
        await Promise.all([...bySlot.values()].map(async (idx) => {
          const o = await this.publishOneSlot(db, idx.map((i) => keys[i]!));
          idx.forEach((i, j) => (out[i] = o[j]!));
        }));
        return out;
      }
    }
    return this.publishOneSlot(db, keys);
  }

  private async publishOneSlot(db: number, keys: readonly Carried[]): Promise<Outcome[]> {
    const out: Outcome[] = new Array<Outcome>(keys.length);
    const dumps: number[] = [];
    const copies: number[] = [];
    keys.forEach((c, i) => (c.payload !== null ? dumps : copies).push(i));
    await Promise.all([
      dumps.length > 0 ? this.publishDumps(db, dumps.map((i) => keys[i]!)).then((o) => dumps.forEach((i, j) => (out[i] = o[j]!))) : null,
      copies.length > 0 ? this.copy(db, copies.map((i) => keys[i]!)).then((o) => copies.forEach((i, j) => (out[i] = o[j]!))) : null,
    ]);
    return out;
  }

  /** One script for the batch: RESTORE of each payload, after the publish checks. */
  private async publishDumps(db: number, keys: readonly Carried[]): Promise<Outcome[]> {
    const kargs: Buffer[] = [];
    const args: Array<string | Buffer> = [String(this.opts.lateWindowMs)];
    for (const c of keys) {
      kargs.push(c.names.key, c.names.marker);
      args.push(c.payload!, c.deadline, String(c.leaseEnd));
    }
    const r = (await this.target.db(db).callBuffer('EVAL', PUBLISH_DUMP_SCRIPT, kargs.length, ...kargs, ...args)) as Buffer[];
    return r.map((b) => b.toString());
  }

  /** The type-aware copy: one-chunk keys in one batched script, longer ones staged one by one. */
  private async copy(db: number, keys: readonly Carried[]): Promise<Outcome[]> {
    const reads = await Promise.all(keys.map((c) => (c.value != null ? taken(c.value) : this.read(db, c))));
    const out: Outcome[] = new Array<Outcome>(keys.length);
    const ones: number[] = [];
    const later: Array<Promise<void>> = [];
    reads.forEach((r, i) => {
      const c = keys[i]!;
      if (r.kind === 'one') ones.push(i);
      else if (r.kind === 'many') later.push(this.staged(db, c, r.first, r.second, r.rest).then((o) => void (out[i] = o)));
      // Where the target takes the source's payload, a type the reader can't copy goes whole.
      else if (this.opts.method === 'dump') later.push(this.dumpNow(db, c).then((o) => void (out[i] = o)));
      else out[i] = `FAIL ${r.why}`;
    });
    if (ones.length > 0) {
      const kargs: Buffer[] = [];
      const args: Array<string | Buffer> = [String(this.opts.lateWindowMs)];
      for (const i of ones) {
        const c = keys[i]!;
        const chunk = (reads[i] as { chunk: CopyChunk }).chunk;
        kargs.push(c.names.key, c.names.marker, stagingKeys(c.names.key, c.tok).staging);
        args.push(c.deadline, String(c.leaseEnd), String(chunk.length), ...encodeChunk(chunk));
      }
      const r = (await this.target.db(db).callBuffer('EVAL', PUBLISH_CHUNKS_SCRIPT, kargs.length, ...kargs, ...args)) as Buffer[];
      ones.forEach((i, j) => (out[i] = r[j]!.toString()));
    }
    await Promise.all(later);
    return out;
  }

  /** Reads a claim key's first two chunks: enough to tell a one-chunk key from a longer one. */
  private async read(db: number, c: Carried): Promise<Read> {
    const gen = readChunks(this.source.db(db), c.names.claim, { ...copyOptions(this.opts.target, this.opts.chunkBytes), maxItems: CHUNK_ITEMS });
    try {
      const a = await gen.next();
      if (a.done) return { kind: 'unsupported', why: 'the reader found nothing to copy' };
      const b = await gen.next();
      if (b.done) return { kind: 'one', chunk: a.value };
      return { kind: 'many', first: a.value, second: b.value, rest: gen };
    } catch (e) {
      if (e instanceof UnsupportedTypeError) return { kind: 'unsupported', why: e.message };
      throw e;
    }
  }

  /**
   * Chunk by chunk into the token's staging key, renewing the lease about three times per lease;
   * then the publish. Nothing of a failed copy can be published: its count stays short, and its
   * staging key expires.
   */
  private async staged(db: number, c: Carried, first: CopyChunk, second: CopyChunk, rest: AsyncGenerator<CopyChunk>): Promise<Outcome> {
    const { staging, count } = stagingKeys(c.names.key, c.tok);
    const tgt = this.target.db(db);
    // A copy that failed (the target out of memory, most often) drops what it staged at once,
    // rather than leave it to the staging TTL: the memory is what the target lacks. DEL is
    // allowed out of memory (UNLINK frees it in the background); if it fails too, the TTL still collects it.
    const dropStaging = async (why: Outcome): Promise<Outcome> => {
      await rest.return(undefined).catch(() => undefined);
      await tgt.unlink(staging, count).catch(() => 0);
      return why;
    };
    const src = this.source.db(db);
    let leaseEnd = c.leaseEnd;
    let renewed = Date.now();
    let i = 0;
    const giveWay = new GiveWay(this.opts.clientRequests);
    const put = async (chunk: CopyChunk): Promise<string | null> => {
      await giveWay.next();
      const r = (await tgt.callBuffer('EVAL', STAGE_SCRIPT, 2, staging, count, String(i), String(STAGING_TTL_MS), ...encodeChunk(chunk))) as [Buffer, number];
      if (r[0].toString() !== 'OK') return `FAIL staging holds ${r[1]} chunks, expected ${i}`;
      i++;
      if (Date.now() - renewed > this.opts.leaseMs / 3) {
        renewed = Date.now();
        leaseEnd = Number(await src.eval(RENEW_SCRIPT, 1, c.names.record, c.tok, String(this.opts.leaseMs)));
        if (leaseEnd === 0) return 'FAIL the claim was taken over by another mover';
      }
      return null;
    };
    try {
      let bad = (await put(first)) ?? (await put(second));
      for await (const chunk of bad === null ? rest : []) {
        bad = await put(chunk);
        if (bad !== null) break;
      }
      if (bad !== null) return await dropStaging(bad);
    } catch (e) {
      return await dropStaging(`FAIL ${e instanceof Error ? e.message : String(e)}`);
    }
    const out = await tgt.callBuffer('EVAL', PUBLISH_STAGED_SCRIPT, 4, c.names.key, c.names.marker, staging, count, String(i), c.deadline, String(leaseEnd), String(this.opts.lateWindowMs));
    return String(out);
  }

  /** DUMP of the claim key now, then its publish (a type the reader can't copy, on a pair that takes the payload). */
  private async dumpNow(db: number, c: Carried): Promise<Outcome> {
    const payload = await this.source.db(db).dumpBuffer(c.names.claim);
    if (payload === null) return `FAIL the claim of token ${c.tok} is gone`;
    return (await this.publishDumps(db, [{ ...c, payload }]))[0]!;
  }
}

/** A string the claim script read already: one chunk, as stringChunks would make it. */
function taken(value: Buffer): Read {
  return { kind: 'one', chunk: [{ name: 'SET', args: [value] }] };
}

/** A chunk as the scripts' arguments: name, subcommand ('' if none), argument count, arguments, per command. */
function encodeChunk(chunk: CopyChunk): Array<string | Buffer> {
  const out: Array<string | Buffer> = [];
  for (const c of chunk) out.push(c.name, c.subcommand ?? '', String(c.args.length), ...c.args);
  return out;
}
