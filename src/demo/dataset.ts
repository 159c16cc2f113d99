/**
 * The demo's dataset: a deterministic, realistic mix of keys (sessions and cached pages with TTLs,
 * counters, user and cart hashes, feeds and job queues, tag sets, leaderboards, event streams),
 * spread unevenly over several dbs. Key `i` of db `d` always has the same name, type, value and
 * TTL, so the workload can check any seeded key it has not changed without storing the dataset.
 */
import { bulk, RawConn, replyText, resp, type Replies } from './raw.js';

/** A key's value in a form that compares equal however the server orders it. */
export type Value =
  | { t: 'string'; v: string }
  | { t: 'hash'; v: Map<string, string> }
  | { t: 'list'; v: string[] }
  | { t: 'set'; v: Set<string> }
  | { t: 'zset'; v: Map<string, number> }
  | { t: 'stream'; v: Array<[string, string[]]> };

export type ValueType = Value['t'];

/** One seeded key: name, value, and TTL in seconds (0: none). */
export interface SeedKey {
  key: string;
  value: Value;
  ttl: number;
}

/** The dbs the demo uses, and each db's share of the keys. */
export const DB_SHARES: ReadonlyArray<readonly [db: number, share: number]> = [
  [0, 0.5],
  [1, 0.3],
  [2, 0.2],
];

/** How many keys each db gets for a total. */
export function keysPerDb(total: number): Map<number, number> {
  const m = new Map<number, number>();
  let left = total;
  DB_SHARES.forEach(([db, share], n) => {
    const k = n === DB_SHARES.length - 1 ? left : Math.round(total * share);
    m.set(db, k);
    left -= k;
  });
  return m;
}

/** A cheap deterministic 31-bit hash of (db, i, salt). */
function h(db: number, i: number, salt = 0): number {
  let x = Math.imul(i ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(db + 1, 0xc2b2ae35) ^ Math.imul(salt + 7, 0x27d4eb2f);
  x ^= x >>> 15;
  x = Math.imul(x, 0x2c1b3c6d);
  x ^= x >>> 12;
  return x & 0x7fffffff;
}

const WORDS = [
  'red', 'blue', 'green', 'sale', 'new', 'hot', 'retro', 'eco', 'kids', 'home', 'garden', 'sport',
  'winter', 'summer', 'gift', 'tech', 'audio', 'video', 'books', 'music', 'travel', 'food', 'vegan',
  'local', 'import', 'premium', 'basic', 'bundle', 'limited', 'classic', 'outdoor', 'indoor', 'pet',
  'toys', 'tools', 'office', 'art', 'craft', 'beauty', 'health', 'fitness', 'games', 'phone',
  'laptop', 'camera', 'watch', 'shoes', 'bags', 'denim', 'wool',
];
const LOREM = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore. ';
const BIG_LEADERBOARD_EVERY = 40_000;

/** The seeded key number `i` of `db`. */
export function seedKey(db: number, i: number): SeedKey {
  const x = h(db, i);
  switch (i % 20) {
    case 0: case 1: case 2: case 3: {
      const token = (x.toString(16) + h(db, i, 1).toString(16)).padEnd(16, '0');
      const v = `{"uid":${i},"db":${db},"token":"${token}","ip":"10.${x % 256}.${(x >> 8) % 256}.${(x >> 16) % 256}","ua":"Mozilla/5.0"}`;
      return { key: `session:${token}:${i}`, value: { t: 'string', v }, ttl: 1800 + (x % 5400) };
    }
    case 4: case 5: {
      const len = 100 + (x % 500);
      const v = `<div class="item" data-db="${db}" data-id="${i}">${LOREM.repeat(Math.ceil(len / LOREM.length)).slice(0, len)}</div>`;
      return { key: `cache:page:/items/${i}`, value: { t: 'string', v }, ttl: x % 2 === 0 ? 7200 : 0 };
    }
    case 6: case 7:
      return { key: `counter:views:${i}`, value: { t: 'string', v: String(x % 100_000) }, ttl: 0 };
    case 8: case 9: case 10: {
      const v = new Map([
        ['name', `User ${i}`],
        ['email', `user${i}@example.com`],
        ['plan', ['free', 'pro', 'team'][x % 3]!],
        ['created', String(1_600_000_000 + (x % 100_000_000))],
        ['logins', String(x % 500)],
        ['db', String(db)],
      ]);
      return { key: `user:${i}`, value: { t: 'hash', v }, ttl: x % 10 === 0 ? 86_400 : 0 };
    }
    case 11: {
      const v = new Map<string, string>();
      for (let j = 0; j <= x % 8; j++) v.set(`sku:${j}${(x >> 4) % 1000}`, String(1 + ((x >> j) % 5)));
      return { key: `cart:${i}`, value: { t: 'hash', v }, ttl: 3600 };
    }
    case 12: case 13: {
      const v: string[] = [];
      for (let j = 0; j < 3 + (x % 13); j++) v.push(`post:${db}:${i * 31 + j}`);
      return { key: `feed:${i}`, value: { t: 'list', v }, ttl: x % 10 === 0 ? 86_400 : 0 };
    }
    case 14: {
      const v = [0, 1, 2].map((j) => `{"job":"email","to":${i},"attempt":${j},"db":${db}}`);
      return { key: `queue:jobs:${i}`, value: { t: 'list', v }, ttl: 0 };
    }
    case 15: case 16: {
      const v = new Set<string>();
      for (let j = 0; j < 3 + (x % 10); j++) v.add(WORDS[(x + j * 7) % WORDS.length]!);
      v.add(`db${db}`);
      return { key: `tags:item:${i}`, value: { t: 'set', v }, ttl: 0 };
    }
    case 17: case 18: {
      const v = new Map<string, number>();
      const n = i % BIG_LEADERBOARD_EVERY === 17 ? 5_000 : 5 + (x % 26);
      for (let j = 0; j < n; j++) v.set(`player:${j}`, (Math.imul(x, j + 1) >>> 0) % 10_000);
      return { key: `leaderboard:${i}`, value: { t: 'zset', v }, ttl: 0 };
    }
    default: {
      const v: Array<[string, string[]]> = [];
      for (let j = 1; j <= 2 + (x % 5); j++) v.push([`${1_700_000_000_000 + i}-${j}`, ['type', j % 2 ? 'view' : 'click', 'db', String(db)]]);
      return { key: `events:${i}`, value: { t: 'stream', v }, ttl: 0 };
    }
  }
}

/** The commands that create `k`, in RESP, and how many there are. */
export function seedRequest(k: SeedKey): { cmds: string; count: number } {
  const { key, value: val, ttl } = k;
  let cmds: string;
  let count = 1;
  switch (val.t) {
    case 'string':
      return { cmds: ttl ? resp(['SET', key, val.v, 'EX', ttl]) : resp(['SET', key, val.v]), count: 1 };
    case 'hash':
      cmds = `*${2 + 2 * val.v.size}\r\n${bulk('HSET')}${bulk(key)}`;
      for (const [f, v] of val.v) cmds += bulk(f) + bulk(v);
      break;
    case 'list':
      cmds = `*${2 + val.v.length}\r\n${bulk('RPUSH')}${bulk(key)}`;
      for (const x of val.v) cmds += bulk(x);
      break;
    case 'set':
      cmds = `*${2 + val.v.size}\r\n${bulk('SADD')}${bulk(key)}`;
      for (const x of val.v) cmds += bulk(x);
      break;
    case 'zset':
      cmds = `*${2 + 2 * val.v.size}\r\n${bulk('ZADD')}${bulk(key)}`;
      for (const [m, sc] of val.v) cmds += bulk(String(sc)) + bulk(m);
      break;
    case 'stream':
      cmds = '';
      count = 0;
      for (const [id, fields] of val.v) {
        cmds += resp(['XADD', key, id, ...fields]);
        count++;
      }
      break;
  }
  if (ttl) {
    cmds += resp(['EXPIRE', key, ttl]);
    count++;
  }
  return { cmds, count };
}

/**
 * Fills `db` of the server on `port` with keys 0..n-1 over one raw connection, in batches with
 * two in flight. Resolves with the keys' names (by number) and how many were given a TTL; rejects
 * on the first error reply.
 */
export async function seedDb(port: number, db: number, n: number): Promise<{ names: string[]; withTtl: number }> {
  const BATCH = 2_000;
  const names: string[] = [];
  let withTtl = 0;
  const conn = await RawConn.connect(port);
  const check = (r: Replies): void => {
    let start = 0;
    r.ends.forEach((end, i) => {
      if (r.buf[start] === 0x2d /* - */) throw new Error(`seeding db ${db}: ${replyText(r, i)}`);
      start = end;
    });
  };
  try {
    const inFlight: Array<Promise<Replies>> = [conn.send(resp(['SELECT', db]), 1)];
    for (let next = 0; next < n; next += BATCH) {
      let out = '';
      let cmds = 0;
      for (let i = next; i < Math.min(n, next + BATCH); i++) {
        const k = seedKey(db, i);
        names.push(k.key);
        if (k.ttl) withTtl++;
        const r = seedRequest(k);
        out += r.cmds;
        cmds += r.count;
      }
      inFlight.push(conn.send(out, cmds));
      if (inFlight.length > 2) check(await inFlight.shift()!);
    }
    for (const p of inFlight) check(await p);
  } finally {
    conn.close();
  }
  return { names, withTtl };
}

/**
 * Commands that check that `key` holds exactly `v` (null: that it does not exist), and the exact
 * bytes they must answer. Each type is read in a form whose reply order is fixed: members and
 * fields are asked for by name, and the count is checked too, so an extra one shows.
 */
export function checkRequest(key: string, v: Value | null): { cmds: string; reply: string; replies: number } {
  const arr = (xs: string[]): string => `*${xs.length}\r\n${xs.join('')}`;
  if (v === null) return { cmds: resp(['EXISTS', key]), reply: ':0\r\n', replies: 1 };
  switch (v.t) {
    case 'string':
      return { cmds: resp(['GET', key]), reply: bulk(v.v), replies: 1 };
    case 'list':
      return { cmds: resp(['LRANGE', key, 0, -1]), reply: arr(v.v.map(bulk)), replies: 1 };
    case 'hash': {
      const f = [...v.v.keys()];
      return { cmds: resp(['HLEN', key]) + resp(['HMGET', key, ...f]), reply: `:${f.length}\r\n${arr(f.map((x) => bulk(v.v.get(x)!)))}`, replies: 2 };
    }
    case 'set': {
      const m = [...v.v];
      return { cmds: resp(['SCARD', key]) + resp(['SMISMEMBER', key, ...m]), reply: `:${m.length}\r\n${arr(m.map(() => ':1\r\n'))}`, replies: 2 };
    }
    case 'zset': {
      // ZRANGE orders by score, then by member bytes (members are ASCII: JS order is byte order).
      const m = [...v.v].sort(([a, x], [b, y]) => x - y || (a < b ? -1 : a > b ? 1 : 0));
      return { cmds: resp(['ZRANGE', key, 0, -1, 'WITHSCORES']), reply: arr(m.flatMap(([x, sc]) => [bulk(x), bulk(String(sc))])), replies: 1 };
    }
    case 'stream':
      return { cmds: resp(['XRANGE', key, '-', '+']), reply: arr(v.v.map(([id, f]) => arr([bulk(id), arr(f.map(bulk))]))), replies: 1 };
  }
}

/** The command that reads a key of type `t` whole. */
export function readCommand(t: ValueType, key: string): string[] {
  switch (t) {
    case 'string': return ['GET', key];
    case 'hash': return ['HGETALL', key];
    case 'list': return ['LRANGE', key, '0', '-1'];
    case 'set': return ['SMEMBERS', key];
    case 'zset': return ['ZRANGE', key, '0', '-1', 'WITHSCORES'];
    case 'stream': return ['XRANGE', key, '-', '+'];
  }
}

/** Pairs of a flat [a, b, a, b] reply (or an object, as some clients turn HGETALL into). */
function pairs(reply: unknown): Array<[string, string]> {
  if (reply && typeof reply === 'object' && !Array.isArray(reply)) return Object.entries(reply as Record<string, string>);
  const a = (reply ?? []) as string[];
  const out: Array<[string, string]> = [];
  for (let j = 0; j + 1 < a.length; j += 2) out.push([a[j]!, a[j + 1]!]);
  return out;
}

/**
 * Whether the reply to readCommand(expected.t) matches `expected` (null: the key must not exist).
 * Returns null when it matches, else a short description of the difference.
 */
export function compare(expected: Value | null, t: ValueType, reply: unknown): string | null {
  const empty = reply === null || (Array.isArray(reply) && reply.length === 0) || (typeof reply === 'object' && Object.keys(reply as object).length === 0);
  if (expected === null) return empty ? null : `expected no key, got ${short(reply)}`;
  if (expected.t !== t) throw new Error('compare: type mismatch in the caller');
  const got = short(reply);
  switch (expected.t) {
    case 'string':
      return reply === expected.v ? null : `expected '${expected.v.slice(0, 40)}', got ${got}`;
    case 'list': {
      const a = (reply ?? []) as string[];
      return a.length === expected.v.length && a.every((x, j) => x === expected.v[j]) ? null : `list differs (${a.length} vs ${expected.v.length} items)`;
    }
    case 'set': {
      const a = (reply ?? []) as string[];
      return a.length === expected.v.size && a.every((x) => expected.v.has(x)) ? null : `set differs (${a.length} vs ${expected.v.size} members)`;
    }
    case 'hash': {
      const p = pairs(reply);
      return p.length === expected.v.size && p.every(([f, v]) => expected.v.get(f) === v) ? null : `hash differs (${p.length} vs ${expected.v.size} fields)`;
    }
    case 'zset': {
      const p = pairs(reply);
      return p.length === expected.v.size && p.every(([m, s]) => expected.v.get(m) === Number(s)) ? null : `zset differs (${p.length} vs ${expected.v.size} members)`;
    }
    case 'stream': {
      const a = (reply ?? []) as Array<[string, string[]]>;
      const ok =
        a.length === expected.v.length &&
        a.every(([id, f], j) => id === expected.v[j]![0] && f.length === expected.v[j]![1].length && f.every((x, n) => x === expected.v[j]![1][n]));
      return ok ? null : `stream differs (${a.length} vs ${expected.v.length} entries)`;
    }
  }
}

function short(reply: unknown): string {
  const s = JSON.stringify(reply) ?? 'undefined';
  return s.length > 60 ? `${s.slice(0, 60)}...` : s;
}

/** A deep copy of a value, so a model can change it without touching the seed. */
export function cloneValue(v: Value): Value {
  switch (v.t) {
    case 'string': return { t: 'string', v: v.v };
    case 'hash': return { t: 'hash', v: new Map(v.v) };
    case 'list': return { t: 'list', v: [...v.v] };
    case 'set': return { t: 'set', v: new Set(v.v) };
    case 'zset': return { t: 'zset', v: new Map(v.v) };
    case 'stream': return { t: 'stream', v: v.v.map(([id, f]) => [id, [...f]]) };
  }
}
