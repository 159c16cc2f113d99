/**
 * The type-aware copy: reads a key from the source with ordinary commands and turns it into
 * commands that rebuild it on the target, chunk by chunk. It serves pairs where the target refuses
 * the source's DUMP payload (Valkey 8 and Redis 7.0 refuse Redis 7.4's; Redis 7.0 refuses
 * Valkey 8's) and keys too big to move in one step. The proxy-side move applies each chunk to its
 * staging key in one script (docs/DESIGN.md, "Type-aware copy").
 *
 *   type     read with                        written as
 *   string   GETRANGE pieces of maxBytes      SET first piece, APPEND the rest
 *   hash     HSCAN (+ HPEXPIRETIME)           HSET f v ... (+ HPEXPIREAT t FIELDS 1 f)
 *   set      SSCAN                            SADD m ...
 *   zset     ZRANGE i j WITHSCORES            ZADD score m ...  (the source's score text, verbatim)
 *   list     LRANGE i j                       RPUSH e ...
 *   stream   see typed-copy-stream.ts
 *
 * Only the first write creates the key; no later one touches its TTL (APPEND, not SET, for a
 * string's later pieces), since the protocol may give the staging key one for garbage collection.
 *
 * The reader relies on the key being frozen (a claim key nobody writes, DESIGN.md rule 1): index
 * ranges stay valid across pages, and a SCAN cursor returns every element at least once (an element
 * seen twice is written twice, which HSET/SADD leave as it was). Only a hash field's own TTL can
 * still change it: a field that expires between two reads is left out.
 */
import type { Redis } from 'ioredis';
import { RehomeError, showKey } from '../errors.js';
import { bytesOf, ChunkBuilder, type CopyChunk, PageSizer } from './typed-copy-chunks.js';
import { cachedFeatures, type ServerFeatures } from './typed-copy-features.js';
import { streamChunks } from './typed-copy-stream.js';

export type { CopyArg, CopyChunk, CopyCommand } from './typed-copy-chunks.js';
export { MAX_COMMAND_ARGS } from './typed-copy-chunks.js';
export { serverFeatures, type ServerFeatures } from './typed-copy-features.js';

/** A key the target can't hold as it is (a module type; hash-field TTLs the target lacks). */
export class UnsupportedTypeError extends RehomeError {
  constructor(
    readonly key: Buffer,
    readonly reason: string,
  ) {
    super('EUNSUPPORTEDTYPE', `key '${showKey(key.toString('latin1'))}' can't be copied type by type: ${reason}`);
    this.name = 'UnsupportedTypeError';
  }
}

/** How readChunks cuts a key and what the target accepts. */
export interface CopyOptions {
  /** A chunk closes once its arguments reach this many bytes. */
  maxBytes: number;
  /** Also close a chunk at this many elements, so one chunk is a short step on the target (default 10,000). */
  maxItems?: number;
  /** The target has HPEXPIREAT (Redis 7.4+); without it a hash with field TTLs is refused. */
  targetSupportsHashFieldTtl: boolean;
  /** The target's XSETID takes ENTRIESADDED/MAXDELETEDID (default true: Redis 7.0+ and Valkey). */
  targetSupportsXsetidEntriesAdded?: boolean;
  /** The target's XGROUP CREATE takes ENTRIESREAD (default true: Redis 7.0+ and Valkey). */
  targetSupportsXgroupEntriesRead?: boolean;
}

/** readChunks' options for a target with these features. */
export function copyOptions(target: ServerFeatures, maxBytes: number): CopyOptions {
  return {
    maxBytes,
    targetSupportsHashFieldTtl: target.hashFieldTtl,
    targetSupportsXsetidEntriesAdded: target.xsetidEntriesAdded,
    targetSupportsXgroupEntriesRead: target.xgroupEntriesRead,
  };
}

const DEFAULT_MAX_ITEMS = 10_000;

/**
 * Reads key `key` (a claim key nobody else writes) from `source` (an ioredis client on the right
 * db) in chunks of about maxBytes each; throws UnsupportedTypeError (module types, hash-field TTLs
 * the target can't hold) before yielding anything. A key that doesn't exist yields no chunk.
 */
export async function* readChunks(source: Redis, key: Buffer, opts: CopyOptions): AsyncGenerator<CopyChunk> {
  // One round trip: the size is only a hint for the first page and the encoding only spares a
  // hash a look for field TTLs, so either refused (ACLs, managed services) means "unknown".
  const [type, usage, encoding] = await Promise.all([
    source.call('TYPE', key) as Promise<string>,
    (source.call('MEMORY', 'USAGE', key) as Promise<number | null>).catch(() => null),
    (source.call('OBJECT', 'ENCODING', key) as Promise<string | null>).catch(() => null),
  ]);
  const b = new ChunkBuilder(opts.maxBytes, opts.maxItems ?? DEFAULT_MAX_ITEMS);
  const estimate = (lengthCommand: string) => sizeHint(source, key, usage, opts.maxBytes, lengthCommand);

  switch (type) {
    case 'none':
      return;
    case 'string':
      yield* stringChunks(source, key, b);
      return;
    case 'hash':
      yield* hashChunks(source, key, b, await estimate('HLEN'), encoding, opts.targetSupportsHashFieldTtl);
      return;
    case 'set':
      yield* walk(b, await estimate('SCARD'), 1, scanFetch(source, key, 'SSCAN'), (page, i) =>
        b.append('SADD', [page[i] as Buffer]),
      );
      return;
    case 'zset':
      // The score's text goes as the source wrote it: every version prints enough digits for the
      // target's strtod to come back to the same double (inf and -inf included).
      yield* walk(b, await estimate('ZCARD'), 2, rangeFetch(source, key, 'ZRANGE', 2), (page, i) =>
        b.append('ZADD', [page[i + 1] as Buffer, page[i] as Buffer]),
      );
      return;
    case 'list':
      yield* walk(b, await estimate('LLEN'), 1, rangeFetch(source, key, 'LRANGE', 1), (page, i) =>
        b.append('RPUSH', [page[i] as Buffer]),
      );
      return;
    case 'stream':
      yield* streamChunks(source, key, b, await estimate('XLEN'), {
        xsetidEntriesAdded: opts.targetSupportsXsetidEntriesAdded ?? true,
        xgroupEntriesRead: opts.targetSupportsXgroupEntriesRead ?? true,
      });
      return;
    default:
      throw new UnsupportedTypeError(
        key,
        `its type '${type}' belongs to a module; only strings, hashes, lists, sets, sorted sets and streams can be rebuilt on the target`,
      );
  }
}

/**
 * A hash, with each field's own TTL where the source has them (Redis 7.4+); a hash that has some
 * is refused for a target without them, before anything is written.
 */
async function* hashChunks(
  source: Redis,
  key: Buffer,
  b: ChunkBuilder,
  estimate: number | 'small' | undefined,
  encoding: string | null,
  targetHasFieldTtls: boolean,
): AsyncGenerator<CopyChunk> {
  const ttls = (await cachedFeatures(source)).hashFieldTtl && (await mayHaveFieldTtls(source, encoding));
  if (ttls && !targetHasFieldTtls && (await anyFieldTtl(source, key))) {
    throw new UnsupportedTypeError(
      key,
      'some of its hash fields have their own TTL (HEXPIRE), which the target does not support',
    );
  }
  if (!ttls || !targetHasFieldTtls) {
    yield* walk(b, estimate, 2, scanFetch(source, key, 'HSCAN'), (page, i) =>
      b.append('HSET', [page[i] as Buffer, page[i + 1] as Buffer]),
    );
    return;
  }
  yield* walk(b, estimate, 3, fieldTtlFetch(source, key), (page, i) => {
    const field = page[i] as Buffer;
    b.append('HSET', [field, page[i + 1] as Buffer]);
    const at = page[i + 2] as Buffer;
    if (at.length > 0) b.command({ name: 'HPEXPIREAT', args: [at, 'FIELDS', '1', field] });
  });
}

/**
 * What PageSizer starts from: 'small' when the whole key fits in one chunk, else bytes per element
 * (MEMORY USAGE over the length, which overestimates: the first page errs small), or undefined.
 */
async function sizeHint(
  source: Redis,
  key: Buffer,
  usage: number | null,
  maxBytes: number,
  lengthCommand: string,
): Promise<number | 'small' | undefined> {
  if (usage === null) return undefined;
  if (usage <= maxBytes) return 'small';
  return usage / Math.max(1, Number(await source.call(lengthCommand, key)));
}

/** One piece of maxBytes per chunk: GETRANGE until a piece comes back short. */
async function* stringChunks(source: Redis, key: Buffer, b: ChunkBuilder): AsyncGenerator<CopyChunk> {
  const size = b.maxBytes;
  for (let offset = 0; ; offset += size) {
    const piece = (await source.callBuffer('GETRANGE', key, offset, offset + size - 1)) as Buffer;
    if (offset === 0) b.command({ name: 'SET', args: [piece] });
    else if (piece.length > 0) b.command({ name: 'APPEND', args: [piece] });
    if (!b.empty()) yield b.take();
    if (piece.length < size) return;
  }
}

/** One read of a walk: a flat reply of `width` values per element, and whether the key is done. */
type Fetch = (count: number) => Promise<{ page: Buffer[]; done: boolean }>;

/**
 * Reads a collection page by page (PageSizer sizes each read) and turns each element into
 * commands with `emit(page, i)`, closing a chunk as soon as it is full, even mid-page.
 */
async function* walk(
  b: ChunkBuilder,
  estimate: number | 'small' | undefined,
  width: number,
  fetch: Fetch,
  emit: (page: Buffer[], i: number) => void,
): AsyncGenerator<CopyChunk> {
  const sizer = new PageSizer(b, estimate);
  for (;;) {
    const { page, done } = await fetch(sizer.next());
    sizer.saw(page.length / width, bytesOf(page));
    for (let i = 0; i + width <= page.length; i += width) {
      emit(page, i);
      if (b.full()) yield b.take();
    }
    if (done) break;
  }
  if (!b.empty()) yield b.take();
}

/** A SCAN-family read (HSCAN, SSCAN); done when the cursor comes back to 0. */
function scanFetch(source: Redis, key: Buffer, scan: 'HSCAN' | 'SSCAN'): Fetch {
  let cursor = '0';
  return async (count) => {
    const [next, page] = (await source.callBuffer(scan, key, cursor, 'COUNT', count)) as [Buffer, Buffer[]];
    cursor = next.toString();
    return { page, done: cursor === '0' };
  };
}

/** An index-range read (ZRANGE, LRANGE) of `width` values per element; done when a page comes back short. */
function rangeFetch(source: Redis, key: Buffer, cmd: 'ZRANGE' | 'LRANGE', width: number): Fetch {
  let from = 0;
  return async (count) => {
    const extra = cmd === 'ZRANGE' ? ['WITHSCORES'] : [];
    const page = (await source.callBuffer(cmd, key, from, from + count - 1, ...extra)) as Buffer[];
    from += page.length / width;
    return { page, done: page.length < count * width };
  };
}

const NO_TTL = Buffer.alloc(0);

/**
 * HSCAN pages with each field's absolute expiry (HPEXPIRETIME) as a third value: its text in ms,
 * or empty for a field without one. A field gone by the time HPEXPIRETIME asks (it expired) is
 * left out.
 */
function fieldTtlFetch(source: Redis, key: Buffer): Fetch {
  const scan = scanFetch(source, key, 'HSCAN');
  return async (count) => {
    const { page, done } = await scan(count);
    const fields = page.filter((_, i) => i % 2 === 0);
    if (fields.length === 0) return { page, done };
    const at = (await source.callBuffer('HPEXPIRETIME', key, 'FIELDS', fields.length, ...fields)) as number[];
    const out: Buffer[] = [];
    at.forEach((t, j) => {
      if (t === -2) return;
      out.push(page[2 * j] as Buffer, page[2 * j + 1] as Buffer, t >= 0 ? Buffer.from(String(t)) : NO_TTL);
    });
    return { page: out, done };
  };
}

/**
 * Whether a hash on a source with hash-field TTLs may have some, without reading it: a small hash
 * that never had one keeps the plain 'listpack' encoding (one that had gets 'listpackex'), and INFO
 * keyspace counts the hashes with field TTLs in each db (subexpiry).
 */
export async function mayHaveFieldTtls(source: Redis, encoding: string | null): Promise<boolean> {
  if (encoding === 'listpack') return false;
  const keyspace = await source.call('INFO', 'keyspace').catch(() => null);
  const dbs = String(keyspace ?? '').split(/\r?\n/).filter((l) => /^db\d+:/.test(l));
  return !(dbs.length > 0 && dbs.every((l) => /[:,]subexpiry=0(,|$)/.test(l)));
}

/** Reads the hash's field names page by page until one has a TTL (a pass before anything is written). */
export async function anyFieldTtl(source: Redis, key: Buffer): Promise<boolean> {
  let cursor = '0';
  do {
    const [next, fields] = (await source.callBuffer('HSCAN', key, cursor, 'COUNT', 1000, 'NOVALUES')) as [Buffer, Buffer[]];
    cursor = next.toString();
    if (fields.length === 0) continue;
    const at = (await source.callBuffer('HPEXPIRETIME', key, 'FIELDS', fields.length, ...fields)) as number[];
    if (at.some((t) => t >= 0)) return true;
  } while (cursor !== '0');
  return false;
}
