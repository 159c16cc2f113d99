/**
 * CommandTable against a real redis-server: every key list the table computes must equal the
 * server's own `COMMAND GETKEYS` answer, order included.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandTable, ShareKind } from '../../src/commands/table.js';
import { encodeRequest } from '../../src/resp/request-framer.js';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';

type Arg = string | Buffer;

let server: RedisServer | undefined;
let redis: Redis | undefined;
let table: CommandTable;
let commandReply: unknown[];

beforeAll(async () => {
  server = await startRedis();
  redis = server.client(0);
  commandReply = (await redis.call('COMMAND')) as unknown[];
  table = new CommandTable(commandReply);
});

afterAll(async () => {
  redis?.disconnect();
  await stopAll(server);
});

/** The server's answer: the keys (latin1, binary safe), or the error text. */
async function serverKeys(args: Arg[]): Promise<{ keys: string[] } | { error: string }> {
  try {
    const reply = (await redis!.callBuffer('COMMAND', 'GETKEYS', ...args)) as Buffer[];
    return { keys: reply.map((k) => k.toString('latin1')) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** The raw COMMAND entry of a command or subcommand ("object|freq"). */
function rawEntry(name: string): unknown[] | undefined {
  const [top, sub] = name.toLowerCase().split('|');
  const entry = commandReply.find((c) => Array.isArray(c) && String(c[0]) === top) as unknown[] | undefined;
  if (!entry || sub === undefined) return entry;
  const subs = (entry[9] as unknown[] | undefined) ?? [];
  return subs.find((s) => Array.isArray(s) && String(s[0]) === `${top}|${sub}`) as unknown[] | undefined;
}

/** True when some key spec of the command is flagged incomplete or has an unknown search type. */
function hasIncompleteSpecs(entry: unknown[]): boolean {
  const specs = (entry[8] as unknown[] | undefined) ?? [];
  for (const spec of specs) {
    if (!Array.isArray(spec)) continue;
    for (let i = 0; i + 1 < spec.length; i += 2) {
      const k = String(spec[i]);
      const v = spec[i + 1];
      if (k === 'flags' && Array.isArray(v) && v.map(String).includes('incomplete')) return true;
      if ((k === 'begin_search' || k === 'find_keys') && Array.isArray(v)) {
        const t = v[v.indexOf('type') + 1];
        if (t !== 'index' && t !== 'keyword' && t !== 'range' && t !== 'keynum') return true;
      }
    }
  }
  return false;
}

function label(args: Arg[]): string {
  return args.map((a) => (typeof a === 'string' ? a : `<${a.toString('hex')}>`)).map((a) => (a === '' ? '""' : a)).join(' ');
}

function resolvedName(args: Arg[]): string {
  const top = String(args[0]).toLowerCase();
  const entry = rawEntry(top);
  const subs = entry?.[9];
  if (Array.isArray(subs) && subs.length > 0 && args.length > 1) {
    const name = `${top}|${String(args[1]).toLowerCase()}`;
    if (rawEntry(name)) return name;
  }
  return top;
}

/**
 * The table's keys must equal GETKEYS exactly; null ("ask the server") is accepted only for
 * commands whose key specs are incomplete or unknown. `mustHaveKeys` makes sure the input is a
 * valid command the server finds keys in (so the comparison is not vacuous).
 */
async function check(args: Arg[], mustHaveKeys = true): Promise<void> {
  const got = table.keys(encodeRequest(args));
  const srv = await serverKeys(args);
  if (mustHaveKeys) {
    expect(srv, `server GETKEYS failed for ${label(args)}`).toHaveProperty('keys');
  }
  const want = 'keys' in srv ? srv.keys : [];
  if (got === null) {
    const entry = rawEntry(resolvedName(args));
    expect(entry, `no COMMAND entry for ${label(args)}`).toBeDefined();
    expect(
      hasIncompleteSpecs(entry!),
      `keys() returned null for ${label(args)} whose key specs are complete (server says ${JSON.stringify(want)})`,
    ).toBe(true);
    return;
  }
  expect(got, label(args)).toEqual(want);
}

const sha = 'a'.repeat(40);
const manyKeys = Array.from({ length: 50 }, (_, i) => `key:${i}`);

const valid: Arg[][] = [
  // strings
  ['GET', 'k'],
  ['get', 'lower'],
  ['SET', 'k', 'v'],
  ['SET', 'k', 'v', 'EX', '10', 'NX', 'GET'],
  ['SET', 'k', 'v', 'KEEPTTL', 'XX'],
  ['SET', 'k', 'v', 'PXAT', '99999999999'],
  ['GETEX', 'k', 'PERSIST'],
  ['GETDEL', 'k'],
  ['APPEND', 'k', 'x'],
  ['MSET', 'a', '1', 'b', '2', 'c', '3'],
  ['MSETNX', 'a', '1', 'b', '2'],
  ['MGET', 'a', 'b', 'c', 'a'],
  ['LCS', 'a', 'b', 'LEN'],
  ['BITFIELD', 'k', 'GET', 'u8', '0'],
  ['BITFIELD_RO', 'k', 'GET', 'u8', '0'],
  // keyspace
  ['DEL', ...manyKeys],
  ['UNLINK', 'a', 'b'],
  ['EXISTS', 'a', 'b', 'a'],
  ['TOUCH', 'a', 'b'],
  ['TYPE', 'k'],
  ['EXPIRE', 'k', '10', 'NX'],
  ['RENAME', 'a', 'b'],
  ['RENAMENX', 'a', 'b'],
  ['COPY', 'a', 'b'],
  ['COPY', 'a', 'b', 'DB', '1', 'REPLACE'],
  ['DUMP', 'k'],
  ['RESTORE', 'k', '0', 'payload', 'REPLACE'],
  ['OBJECT', 'ENCODING', 'k'],
  ['object', 'encoding', 'k'],
  ['OBJECT', 'FREQ', 'k'],
  ['OBJECT', 'IDLETIME', 'k'],
  ['OBJECT', 'REFCOUNT', 'k'],
  ['MEMORY', 'USAGE', 'k'],
  ['MEMORY', 'USAGE', 'k', 'SAMPLES', '5'],
  ['WATCH', 'a', 'b', 'c'],
  // scripts and functions
  ['EVAL', 'return 1', '0'],
  ['EVAL', 'return 1', '1', 'k1'],
  ['EVAL', 'return 1', '1', 'k1', 'arg1', 'arg2'],
  ['EVAL', 'return 1', '3', 'k1', 'k2', 'k3'],
  ['EVAL', 'return 1', '3', 'k1', 'k2', 'k3', 'a1', 'a2'],
  ['EVAL_RO', 'return 1', '2', 'k1', 'k2', 'a1'],
  ['EVALSHA', sha, '0'],
  ['EVALSHA', sha, '0', 'a1'],
  ['EVALSHA', sha, '1', 'k1', 'a1'],
  ['EVALSHA', sha, '3', 'k1', 'k2', 'k3', 'a1'],
  ['EVALSHA_RO', sha, '1', 'k1'],
  ['FCALL', 'fn', '0'],
  ['FCALL', 'fn', '0', 'a1'],
  ['FCALL', 'fn', '1', 'k1', 'a1'],
  ['FCALL', 'fn', '3', 'k1', 'k2', 'k3', 'a1', 'a2'],
  ['FCALL_RO', 'fn', '2', 'k1', 'k2'],
  // sorted sets
  ['ZADD', 'z', '1', 'm'],
  ['ZUNIONSTORE', 'd', '2', 'a', 'b'],
  ['ZUNIONSTORE', 'd', '2', 'a', 'b', 'WEIGHTS', '1', '2', 'AGGREGATE', 'MAX'],
  ['ZINTERSTORE', 'd', '3', 'a', 'b', 'c'],
  ['ZDIFFSTORE', 'd', '2', 'a', 'b'],
  ['ZUNION', '2', 'a', 'b', 'WITHSCORES'],
  ['ZINTER', '2', 'a', 'b'],
  ['ZINTER', '3', 'a', 'b', 'c', 'AGGREGATE', 'SUM', 'WITHSCORES'],
  ['ZINTER', '1', 'a', 'WEIGHTS', '2'],
  ['ZDIFF', '2', 'a', 'b'],
  ['ZDIFF', '1', 'a', 'WITHSCORES'],
  ['ZINTERCARD', '2', 'a', 'b', 'LIMIT', '1'],
  ['ZMPOP', '2', 'a', 'b', 'MIN', 'COUNT', '2'],
  ['BZMPOP', '1', '2', 'a', 'b', 'MAX'],
  ['BZPOPMIN', 'a', 'b', '0'],
  // lists
  ['LMPOP', '1', 'a', 'LEFT'],
  ['LMPOP', '2', 'a', 'b', 'RIGHT', 'COUNT', '3'],
  ['BLMPOP', '0', '2', 'a', 'b', 'LEFT'],
  ['BLMPOP', '1.5', '3', 'a', 'b', 'c', 'RIGHT', 'COUNT', '2'],
  ['BLPOP', 'a', 'b', 'c', 'd', '0'],
  ['BLPOP', ...manyKeys, '1'],
  ['BRPOP', 'a', '0'],
  ['BLMOVE', 'src', 'dst', 'LEFT', 'RIGHT', '0'],
  ['LMOVE', 'src', 'dst', 'LEFT', 'LEFT'],
  ['RPOPLPUSH', 'src', 'dst'],
  ['BRPOPLPUSH', 'src', 'dst', '0'],
  ['LPOS', 'l', 'x', 'RANK', '1'],
  // sets
  ['SINTERCARD', '2', 'a', 'b'],
  ['SINTERCARD', '3', 'a', 'b', 'c', 'LIMIT', '10'],
  ['SMOVE', 'a', 'b', 'member'],
  ['SUNIONSTORE', 'd', 'a', 'b', 'c'],
  ['SINTER', 'a', 'b'],
  // streams
  ['XADD', 's', '*', 'f', 'v'],
  ['XREAD', 'STREAMS', 's', '0'],
  ['XREAD', 'COUNT', '10', 'STREAMS', 's1', 's2', '0', '0'],
  ['XREAD', 'BLOCK', '100', 'STREAMS', 's1', 's2', 's3', '0', '$', '0'],
  ['XREAD', 'COUNT', '5', 'BLOCK', '0', 'STREAMS', 'a', 'b', 'c', 'd', '0', '0', '0', '0'],
  ['xread', 'count', '1', 'streams', 'a', 'b', '0', '0'],
  ['XREAD', 'STREAMS', 'streams', '0'],
  ['XREAD', 'STREAMS', 'STREAMS', 'a', '0', '0'],
  ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's', '>'],
  ['XREADGROUP', 'GROUP', 'g', 'c', 'COUNT', '10', 'BLOCK', '5', 'NOACK', 'STREAMS', 's1', 's2', '>', '>'],
  ['XREADGROUP', 'GROUP', 'g', 'STREAMS', 'STREAMS', 's', '>'],
  ['XINFO', 'STREAM', 'k'],
  ['XINFO', 'STREAM', 'k', 'FULL', 'COUNT', '5'],
  ['XINFO', 'GROUPS', 'k'],
  ['XINFO', 'CONSUMERS', 'k', 'g'],
  ['XGROUP', 'CREATE', 's', 'g', '$', 'MKSTREAM'],
  ['XACK', 's', 'g', '1-0', '2-0'],
  ['XAUTOCLAIM', 's', 'g', 'c', '0', '0'],
  // geo
  ['GEOADD', 'g', '13.361389', '38.115556', 'Palermo'],
  ['GEORADIUS', 'k', '15', '37', '200', 'km'],
  ['GEORADIUS', 'k', '15', '37', '200', 'km', 'STORE', 'dst'],
  ['GEORADIUS', 'k', '15', '37', '200', 'km', 'COUNT', '3', 'ASC', 'STOREDIST', 'dst2'],
  ['GEORADIUS', 'k', '15', '37', '200', 'km', 'STORE', 'd1', 'STOREDIST', 'd2'],
  ['georadius', 'k', '15', '37', '200', 'km', 'store', 'dst'],
  ['GEORADIUS', 'store', '15', '37', '200', 'km'],
  ['GEORADIUSBYMEMBER', 'k', 'm', '100', 'km', 'STORE', 'd'],
  ['GEORADIUS_RO', 'k', '15', '37', '200', 'km'],
  ['GEOSEARCH', 'k', 'FROMLONLAT', '1', '2', 'BYBOX', '1', '1', 'km'],
  ['GEOSEARCHSTORE', 'dst', 'src', 'FROMMEMBER', 'm', 'BYRADIUS', '10', 'km'],
  ['GEOSEARCHSTORE', 'dst', 'src', 'FROMLONLAT', '1', '2', 'BYRADIUS', '10', 'km', 'STOREDIST'],
  // bits, hyperloglog
  ['BITOP', 'AND', 'd', 'a', 'b', 'c'],
  ['BITOP', 'NOT', 'd', 'a'],
  ['BITCOUNT', 'k', '0', '-1'],
  ['PFADD', 'h', 'a', 'b'],
  ['PFCOUNT', 'a'],
  ['PFCOUNT', 'a', 'b', 'c'],
  ['PFMERGE', 'd', 'a', 'b'],
  // hashes
  ['HSET', 'h', 'f', 'v', 'g', 'w'],
  ['HGETALL', 'h'],
];

/** Commands the table may answer with null (incomplete specs): still checked if it answers. */
const maybeIncomplete: Arg[][] = [
  ['SORT', 'k'],
  ['SORT', 'k', 'LIMIT', '0', '10', 'ALPHA'],
  ['SORT', 'k', 'BY', 'w_*', 'GET', '#', 'STORE', 'd'],
  ['SORT_RO', 'k', 'ALPHA'],
  ['MIGRATE', '127.0.0.1', '6379', 'k', '0', '1000'],
  ['MIGRATE', '127.0.0.1', '6379', '', '0', '1000', 'KEYS', 'a', 'b'],
  ['MIGRATE', '127.0.0.1', '6379', '', '0', '1000', 'COPY', 'REPLACE', 'AUTH2', 'u', 'p', 'KEYS', 'a', 'b', 'c'],
];

const noKeys: Arg[][] = [
  ['PING'],
  ['ECHO', 'x'],
  ['DBSIZE'],
  ['INFO', 'keyspace'],
  ['SCAN', '0', 'MATCH', '*'],
  ['KEYS', '*'],
  ['PUBLISH', 'ch', 'm'],
  ['SUBSCRIBE', 'a', 'b'],
  ['CONFIG', 'GET', 'maxmemory'],
  ['CLIENT', 'SETNAME', 'x'],
  ['OBJECT', 'HELP'],
  ['FUNCTION', 'LIST'],
  ['SCRIPT', 'EXISTS', sha],
  ['MULTI'],
  ['SELECT', '1'],
];

describe('CommandTable (redis-server 7)', () => {
  it('loads every command of the server', () => {
    expect(table.size).toBe(commandReply.length);
    expect(table.size).toBeGreaterThan(200);
    for (const n of ['get', 'set', 'eval', 'xread', 'object', 'migrate']) expect(table.has(n)).toBe(true);
    expect(table.has('nosuchcommand')).toBe(false);
  });

  it('resolves container commands to their subcommand', () => {
    const info = table.lookup(encodeRequest(['OBJECT', 'Encoding', 'k']));
    expect(info?.name).toBe('object|encoding');
    expect(table.lookup(encodeRequest(['OBJECT', 'nope']))?.name).toBe('object');
    expect(table.lookup(encodeRequest(['NOSUCH']))).toBeUndefined();
  });

  describe('keys() equals COMMAND GETKEYS', () => {
    for (const args of valid) {
      it(label(args).slice(0, 100), async () => {
        await check(args);
      });
    }
  });

  describe('commands with incomplete key specs: null or the exact keys', () => {
    for (const args of maybeIncomplete) {
      it(label(args), async () => {
        await check(args);
      });
    }

    it('SORT and MIGRATE are marked incomplete by the server (so null is legitimate)', () => {
      expect(hasIncompleteSpecs(rawEntry('sort')!)).toBe(true);
      expect(hasIncompleteSpecs(rawEntry('migrate')!)).toBe(true);
      expect(hasIncompleteSpecs(rawEntry('xread')!)).toBe(false);
      expect(hasIncompleteSpecs(rawEntry('eval')!)).toBe(false);
    });
  });

  describe('commands without keys return []', () => {
    for (const args of noKeys) {
      it(label(args), async () => {
        expect(table.keys(encodeRequest(args))).toEqual([]);
        await check(args, false);
      });
    }
  });

  describe('shard channel commands (only not_key specs) have no keys', () => {
    for (const args of [
      ['SPUBLISH', 'chan', 'msg'],
      ['SSUBSCRIBE', 'c1', 'c2'],
      ['SUNSUBSCRIBE', 'c1'],
    ]) {
      it(label(args), async () => {
        const srv = await serverKeys(args);
        expect(srv).toEqual({ error: expect.stringMatching(/no key arguments/) });
        expect(table.keys(encodeRequest(args))).toEqual([]);
      });
    }
  });

  describe('binary-safe keys', () => {
    const bin = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80, 0x41]);
    const utf8 = Buffer.from('ключ✓');
    for (const args of [
      ['SET', bin, 'v'],
      ['MSET', bin, '1', utf8, '2'],
      ['EVAL', 'return 1', '2', bin, utf8, 'x'],
      ['XREAD', 'STREAMS', bin, utf8, '0', '0'],
      ['ZUNIONSTORE', utf8, '2', bin, 'b'],
    ] as Arg[][]) {
      it(label(args), async () => {
        await check(args);
        const got = table.keys(encodeRequest(args));
        expect(got).not.toBeNull();
        // latin1 strings map back to the exact key bytes
        expect(got!.some((k) => Buffer.from(k, 'latin1').equals(bin))).toBe(true);
      });
    }
  });

  describe('wrong arity and malformed key counts return []', () => {
    const cases: Arg[][] = [
      ['GET'],
      ['GET', 'a', 'b'],
      ['SET', 'k'],
      ['RENAME', 'a'],
      ['OBJECT', 'ENCODING'],
      ['OBJECT', 'ENCODING', 'a', 'b'],
      ['MEMORY', 'USAGE'],
      ['EVAL', 'return 1'],
      ['XREAD', 'STREAMS'],
      ['XREAD', 'STREAMS', 's'],
      ['BLPOP', 'a'],
      ['LMPOP', '0', 'LEFT'],
      ['ZUNIONSTORE', 'd', '5', 'a'],
      ['ZINTER', 'x', 'a'],
      ['SINTERCARD', '0', 'a'],
      ['EVAL', 'return 1', '5', 'a'],
      ['EVAL', 'return 1', '-1'],
      ['EVAL', 'return 1', 'abc', 'k'],
      ['FCALL', 'fn', '2', 'a'],
      ['EVALSHA', sha, '01', 'k'],
    ];
    for (const args of cases) {
      it(label(args), async () => {
        const got = table.keys(encodeRequest(args));
        expect(got).toEqual([]);
        // [] is only right because the server rejects the command without running it.
        // (GETKEYS itself is laxer: it finds ['k'] in `EVALSHA sha 01 k`, which fails to run.)
        await expect(redis!.call(...(args as [string, ...string[]]))).rejects.toThrow(/^ERR /);
      });
    }
  });

  it('PFMERGE with only a destination names that destination', async () => {
    // The server's GETKEYS rejects `PFMERGE d` (its source-key spec is empty), yet the command
    // runs and writes d: the table must name d.
    expect(await serverKeys(['PFMERGE', 'pfdest'])).toHaveProperty('error');
    expect(table.keys(encodeRequest(['PFMERGE', 'pfdest']))).toEqual(['pfdest']);
    expect(await redis!.call('PFMERGE', 'pfdest')).toBe('OK');
    expect(await redis!.call('EXISTS', 'pfdest')).toBe(1);
    await redis!.call('DEL', 'pfdest');
  });

  describe('unknown subcommands of known commands return [] (the server rejects them unrun)', () => {
    for (const args of [['OBJECT', 'NOSUCHSUB', 'k'], ['XINFO', 'NOPE', 'k']]) {
      it(label(args), async () => {
        expect(table.keys(encodeRequest(args))).toEqual([]);
        const srv = await serverKeys(args);
        expect(srv).toHaveProperty('error');
      });
    }
  });

  describe('commands the table does not know ask the server (a module loaded after start may name keys)', () => {
    for (const args of [['NOSUCHCMD', 'a', 'b'], ['FOO']]) {
      it(label(args), async () => {
        expect(table.keys(encodeRequest(args))).toBeNull();
        const srv = await serverKeys(args);
        expect(srv).toHaveProperty('error');
      });
    }
  });
});

describe('CommandTable without a server reply', () => {
  it('an empty table knows no command: every command asks the server for its keys', () => {
    const t = new CommandTable([]);
    expect(t.size).toBe(0);
    expect(t.keys(encodeRequest(['GET', 'k']))).toBeNull();
  });

  it('ignores malformed entries', () => {
    const t = new CommandTable([null, 'x', 42, ['short'], ['get', 2, ['readonly'], 1, 1, 1, [], [], [], []]]);
    expect(t.size).toBe(1);
    expect(t.keys(encodeRequest(['GET', 'k']))).toEqual(['k']);
  });
});

describe('CommandTable.shareKind: what may travel on a shared connection', () => {
  const kind = (...args: string[]) => table.shareKind(encodeRequest(args));

  it('reads and writes that name their keys and carry no connection state are shared', () => {
    for (const args of [['GET', 'k'], ['MGET', 'a', 'b'], ['EXISTS', 'k'], ['TTL', 'k'], ['HGET', 'h', 'f'], ['ZSCORE', 'z', 'm']]) {
      expect(kind(...args), args.join(' ')).toBe(ShareKind.Read);
    }
    for (const args of [['SET', 'k', 'v'], ['INCR', 'k'], ['DEL', 'k'], ['HSET', 'h', 'f', 'v'], ['LPUSH', 'l', 'x'], ['EXPIRE', 'k', '10'], ['ZADD', 'z', '1', 'm'], ['MSET', 'a', '1', 'b', '2']]) {
      expect(kind(...args), args.join(' ')).toBe(ShareKind.Write);
    }
  });

  it('connection state, transactions, scripts, pub/sub, blocking, admin, keyless and large read replies are not', () => {
    for (const args of [
      ['SELECT', '1'], ['MULTI'], ['EXEC'], ['WATCH', 'k'], ['AUTH', 'p'], ['HELLO'], ['CLIENT', 'SETNAME', 'x'],
      ['EVAL', 'return 1', '0'], ['FCALL', 'f', '0'], ['SUBSCRIBE', 'c'], ['PUBLISH', 'c', 'm'], ['BLPOP', 'l', '0'],
      ['WAIT', '1', '0'], ['XREAD', 'STREAMS', 's', '0'], ['KEYS', '*'], ['DBSIZE'], ['PING'], ['INFO'], ['FLUSHALL'],
      ['LRANGE', 'l', '0', '-1'], ['HGETALL', 'h'], ['SMEMBERS', 's'], ['SORT', 'l'], ['OBJECT'], ['NOSUCHCOMMAND', 'k'],
    ]) {
      expect(kind(...args), args.join(' ')).toBe(ShareKind.No);
    }
  });
});
