/**
 * Keys of every data type, a deep snapshot of a key read with plain commands (independent of the
 * type-aware copy's reader, so it can judge it), and a chunk applier that runs each copy command
 * against a destination key inside EVAL, as the proxy-side move does with its staging key.
 */
import type { Redis } from 'ioredis';
import type { CopyChunk } from '../../src/migration/typed-copy.js';

/**
 * ARGV holds the chunk's commands one after another: name, subcommand ('' for none), argument
 * count, arguments. Each runs as redis.call(name, [subcommand,] KEYS[1], args...).
 */
const APPLY_SCRIPT = `
local i = 1
while i <= #ARGV do
  local name, sub, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local argv = {}
  if sub ~= '' then argv[#argv + 1] = sub end
  argv[#argv + 1] = KEYS[1]
  for j = 1, n do argv[#argv + 1] = ARGV[i + 2 + j] end
  redis.call(name, unpack(argv))
  i = i + 3 + n
end
return 1`;

/** Applies one chunk to `dest` on `target` in one script call. */
export async function applyChunk(target: Redis, dest: Buffer, chunk: CopyChunk): Promise<void> {
  const argv: Array<string | Buffer> = [];
  for (const c of chunk) argv.push(c.name, c.subcommand ?? '', String(c.args.length), ...c.args);
  await target.callBuffer('EVAL', APPLY_SCRIPT, 1, dest, ...argv);
}

/** Bytes of a chunk's arguments. */
export function chunkBytes(chunk: CopyChunk): number {
  let n = 0;
  for (const c of chunk) for (const a of c.args) n += typeof a === 'string' ? Buffer.byteLength(a) : a.length;
  return n;
}

const hex = (b: unknown): string => (Buffer.isBuffer(b) ? b.toString('hex') : String(b));
const str = (b: unknown): string => (Buffer.isBuffer(b) ? b.toString('latin1') : String(b));

/** A score's text as the double it stands for (Redis writes infinities as inf and -inf); throws on anything else. */
export function parseScore(text: string): number {
  const n = /^[+-]?inf$/i.test(text) ? (text.startsWith('-') ? -Infinity : Infinity) : Number(text);
  if (Number.isNaN(n)) throw new Error(`not a score: ${text}`);
  return n;
}

/** A RESP map sent as a flat array as a plain object with string keys. */
function record(reply: unknown): Record<string, unknown> {
  const a = reply as unknown[];
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < a.length; i += 2) out[str(a[i])] = a[i + 1];
  return out;
}

/**
 * Everything observable of a key, as plain data (binary as hex, scores as numbers). Stream fields a
 * server doesn't report (entries-added before 7.0) are left out; compare with sameKey.
 */
export async function snapshot(c: Redis, key: Buffer): Promise<Record<string, unknown>> {
  const type = String(await c.call('TYPE', key));
  const call = (...args: Array<string | number | Buffer>) => c.callBuffer(args[0] as string, ...args.slice(1));
  switch (type) {
    case 'none':
      return { type };
    case 'string':
      return { type, value: hex(await call('GET', key)) };
    case 'set':
      return { type, members: ((await call('SMEMBERS', key)) as Buffer[]).map(hex).sort() };
    case 'list':
      return { type, elements: ((await call('LRANGE', key, 0, -1)) as Buffer[]).map(hex) };
    case 'zset': {
      const flat = (await call('ZRANGE', key, 0, -1, 'WITHSCORES')) as Buffer[];
      const out: Array<[string, number]> = [];
      for (let i = 0; i < flat.length; i += 2) out.push([hex(flat[i]), parseScore(str(flat[i + 1]))]);
      return { type, members: out };
    }
    case 'hash': {
      const flat = (await call('HGETALL', key)) as Buffer[];
      const fields: Array<[string, string, number]> = [];
      const hasTtl = await c.call('HPEXPIRETIME', key, 'FIELDS', 1, 'f').then(
        () => true,
        () => false, // an unknown command before Redis 7.4
      );
      for (let i = 0; i < flat.length; i += 2) {
        const at = hasTtl ? ((await call('HPEXPIRETIME', key, 'FIELDS', 1, flat[i] as Buffer)) as number[])[0]! : -1;
        fields.push([hex(flat[i]), hex(flat[i + 1]), at]);
      }
      return { type, fields: fields.sort((a, b) => (a[0] < b[0] ? -1 : 1)) };
    }
    case 'stream':
      return { type, ...(await streamSnapshot(c, key)) };
    default:
      return { type };
  }
}

async function streamSnapshot(c: Redis, key: Buffer): Promise<Record<string, unknown>> {
  const info = record(await c.callBuffer('XINFO', 'STREAM', key));
  const entries = ((await c.callBuffer('XRANGE', key, '-', '+')) as Array<[Buffer, Buffer[]]>).map(([id, fv]) => [
    str(id),
    fv.map(hex),
  ]);
  const groups = [];
  for (const g of ((await c.callBuffer('XINFO', 'GROUPS', key)) as unknown[]).map(record)) {
    const consumers = ((await c.callBuffer('XINFO', 'CONSUMERS', key, g.name as Buffer)) as unknown[])
      .map(record)
      .map((x) => [hex(x.name), x.pending]);
    const pending = ((await c.callBuffer('XPENDING', key, g.name as Buffer, '-', '+', 1_000_000)) as unknown[][]).map(
      ([id, consumer, , deliveries]) => [str(id), hex(consumer), deliveries],
    );
    groups.push({
      name: hex(g.name),
      lastDelivered: str(g['last-delivered-id']),
      ...('entries-read' in g ? { entriesRead: g['entries-read'] } : {}),
      pendingCount: g.pending,
      consumers: consumers.sort(),
      pending,
    });
  }
  return {
    length: info.length,
    lastId: str(info['last-generated-id']),
    ...('entries-added' in info ? { entriesAdded: info['entries-added'] } : {}),
    ...('max-deleted-entry-id' in info ? { maxDeletedId: str(info['max-deleted-entry-id']) } : {}),
    entries,
    groups,
  };
}

/**
 * The snapshots with the stream metadata only one side reports left out (a 6.2 source has no
 * entries-added; what the target then holds is checked by the tests that need it).
 */
export function comparable(a: Record<string, unknown>, b: Record<string, unknown>): [unknown, unknown] {
  const strip = (s: Record<string, unknown>, other: Record<string, unknown>) => {
    const out: Record<string, unknown> = { ...s };
    for (const k of ['entriesAdded', 'maxDeletedId']) if (!(k in other)) delete out[k];
    if (Array.isArray(s.groups)) {
      out.groups = (s.groups as Array<Record<string, unknown>>).map((g) => {
        const { entriesRead, ...rest } = g;
        return 'entriesAdded' in other && 'entriesAdded' in s ? { ...rest, entriesRead } : rest;
      });
    }
    return out;
  };
  return [strip(a, b), strip(b, a)];
}

/** Byte strings that trip text handling: NUL, CR LF, invalid UTF-8, a space, a quote. */
export const BINARY = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0xc3, 0x28, 0x20, 0x22, 0x80]);

const bin = (s: string) => Buffer.concat([Buffer.from(s), BINARY]);

/** Doubles whose text round trip is easy to get wrong, with their members. */
export const TRICKY_SCORES: Array<[string, string]> = [
  ['0.1', 'a'],
  ['0.3333333333333333', 'b'],
  ['9007199254740993', 'c'],
  ['5e-324', 'd'],
  ['1.7976931348623157e308', 'e'],
  ['-inf', 'f'],
  ['inf', 'g'],
  ['123456789.123456789', 'h'],
  ['-2.5e-10', 'i'],
  ['1e21', 'j'],
];

/**
 * Writes one key of each kind (binary names and values, big ones in several chunks at small
 * maxBytes, empty-ish edge cases) and returns their names. `fieldTtl`: add a hash with field TTLs
 * (the source must have HPEXPIRE).
 */
export async function seedEveryType(c: Redis, opts: { fieldTtl?: boolean } = {}): Promise<Buffer[]> {
  const keys: Buffer[] = [];
  const k = (s: string) => {
    const key = bin(`k:${s}:`);
    keys.push(key);
    return key;
  };
  await c.set(k('string'), bin('value'));
  await c.set(k('empty-string'), '');
  await c.set(k('int-string'), '12345');
  await c.set(k('big-string'), Buffer.alloc(300_000, 'xyz'));

  await c.hset(k('hash'), bin('f1'), bin('v1'), 'f2', '');
  const bigHash = k('big-hash');
  for (let i = 0; i < 3000; i += 500) {
    const args: Buffer[] = [];
    for (let j = i; j < i + 500; j++) args.push(bin(`f${j}`), Buffer.alloc(j % 97, j % 251));
    await c.hset(bigHash, ...args);
  }

  await c.sadd(k('int-set'), 1, 2, 3, -7, 1_000_000_000_000);
  await c.sadd(k('set'), bin('m1'), bin('m2'), '');
  await c.sadd(k('big-set'), ...Array.from({ length: 5000 }, (_, i) => bin(`m${i}`)));

  await c.zadd(k('zset-tricky'), ...TRICKY_SCORES.flat());
  await c.zadd(k('zset-equal'), ...['a', 'b', 'c', 'd'].flatMap((m) => ['1.5', bin(m)]));
  const bigZ = k('big-zset');
  for (let i = 0; i < 5000; i += 1000) {
    await c.zadd(bigZ, ...Array.from({ length: 1000 }, (_, j) => [String((i + j) % 37 === 0 ? 3 : (i + j) / 7), bin(`m${i + j}`)]).flat());
  }

  await c.rpush(k('list'), bin('a'), '', bin('a'), 'b');
  await c.rpush(k('big-list'), ...Array.from({ length: 5000 }, (_, i) => bin(`e${i}`)));

  const s = k('stream');
  for (let i = 1; i <= 30; i++) await c.call('XADD', s, `${i}-${i % 3}`, bin('f'), bin(`v${i}`), 'n', String(i));
  await c.call('XGROUP', 'CREATE', s, bin('g1'), '0');
  await c.call('XGROUP', 'CREATE', s, 'g2', '$');
  await c.call('XGROUP', 'CREATE', s, 'g3', '10-1');
  await c.call('XGROUP', 'CREATECONSUMER', s, bin('g1'), 'idle-consumer');
  await c.call('XREADGROUP', 'GROUP', bin('g1'), bin('c1'), 'COUNT', 7, 'STREAMS', s, '>');
  await c.call('XREADGROUP', 'GROUP', bin('g1'), 'c2', 'COUNT', 3, 'STREAMS', s, '>');
  await c.call('XACK', s, bin('g1'), '2-2');
  await c.call('XCLAIM', s, bin('g1'), 'c2', 0, '3-0', 'RETRYCOUNT', 5);
  await c.call('XREADGROUP', 'GROUP', 'g3', 'c9', 'COUNT', 2, 'STREAMS', s, '>');
  // Deletions after the reads: the source still knows each group's entries-read, the target can't
  // work it out (a tombstone inside what was read) and must be told.
  await c.call('XDEL', s, '2-2', '30-0');

  const withGroups = k('stream-no-entries-groups');
  await c.call('XGROUP', 'CREATE', withGroups, 'g', '$', 'MKSTREAM');
  await c.call('XGROUP', 'CREATECONSUMER', withGroups, 'g', 'c');
  const emptied = k('stream-emptied');
  await c.call('XADD', emptied, '7-7', 'f', 'v');
  await c.call('XDEL', emptied, '7-7');

  if (opts.fieldTtl) {
    const h = k('hash-field-ttl');
    await c.hset(h, 'keep', '1', bin('short'), '2', 'long', '3');
    await c.call('HPEXPIREAT', h, Date.now() + 3_600_000, 'FIELDS', 1, bin('short'));
    await c.call('HPEXPIREAT', h, Date.now() + 86_400_000, 'FIELDS', 1, 'long');
  }
  return keys;
}
