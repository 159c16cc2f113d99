/**
 * The demo's live workload: several clients reading and writing through rehome while it migrates.
 *
 * Each client owns a disjoint share of one db's seeded keys, so it knows what every read must
 * return: the seeded value, or what its own writes made of it. New keys are written once and then
 * only read, by any client of their db. Writes
 * use commands that keep a key's TTL (SET ... KEEPTTL, APPEND, INCRBY, HSET, RPUSH, SADD, ZINCRBY,
 * XADD), deletes and re-creations are tracked, so at the end the new server can be checked key by
 * key (values, key count and TTL count) against the model.
 */
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { checkRequest, cloneValue, compare, readCommand, seedKey, type Value, type ValueType } from './dataset.js';
import { RawConn, resp, type Replies } from './raw.js';

/** What the workload changed in one db. Keys not in `changed` still hold their seeded value. */
export interface DbModel {
  db: number;
  /** Seeded keys 0..seeded-1. */
  seeded: number;
  /** Seeded keys that had a TTL. */
  seededWithTtl: number;
  /** Seeded key names by number. */
  names: string[];
  /** Current value of each key a client changed or created (null: deleted). */
  changed: Map<string, { t: ValueType; v: Value | null; ttlLost: boolean }>;
  /** Keys the workload created (not seeded). */
  created: string[];
  /** Keys whose last write failed, so their value is unknown. */
  uncertain: Set<string>;
}

export interface WorkloadStats {
  ops: number;
  reads: number;
  writes: number;
  /** Commands that failed (an error reply, a dropped connection). */
  errors: number;
  /** Reads that returned something other than the model's value. */
  wrong: number;
  /** Latency of every operation (one round trip) while the migration ran, in ms. */
  latencies: number[];
  /** The same once the source was drained (pure pass-through). */
  latenciesDrained: number[];
  /** Set when the source is drained: from then on latencies go to latenciesDrained. */
  drained: boolean;
  /** The first few errors and wrong values, for the summary. */
  samples: string[];
}

/** Keys per client that most operations go to, as in most real workloads. */
const HOT_KEYS = 50;

type Op = { args: Array<string | number>; apply: (reply: unknown, cur: Value | null) => Value };

/** A command that changes seeded key `i` (by kind) and how the model follows it. */
function writeOp(i: number, key: string, t: ValueType, n: number, client: number): Op {
  const tag = `c${client}-${n}`;
  switch (t) {
    case 'string':
      if (i % 20 < 4) return { args: ['SET', key, `{"uid":${i},"renewed":"${tag}"}`, 'KEEPTTL'], apply: () => ({ t, v: `{"uid":${i},"renewed":"${tag}"}` }) };
      if (i % 20 < 6) return { args: ['APPEND', key, `<!--${tag}-->`], apply: (_r, cur) => ({ t, v: `${cur?.t === 'string' ? cur.v : ''}<!--${tag}-->` }) };
      return { args: ['INCRBY', key, 3], apply: (r) => ({ t, v: String(r) }) };
    case 'hash':
      return {
        args: ['HSET', key, 'last_seen', tag],
        apply: (_r, cur) => {
          const v = new Map(cur?.t === 'hash' ? cur.v : []);
          v.set('last_seen', tag);
          return { t, v };
        },
      };
    case 'list':
      return { args: ['RPUSH', key, tag], apply: (_r, cur) => ({ t, v: [...(cur?.t === 'list' ? cur.v : []), tag] }) };
    case 'set':
      return { args: ['SADD', key, tag], apply: (_r, cur) => ({ t, v: new Set([...(cur?.t === 'set' ? cur.v : []), tag]) }) };
    case 'zset': {
      const m = `player:${n % 20}`;
      return {
        args: ['ZINCRBY', key, 5, m],
        apply: (r, cur) => {
          const v = new Map(cur?.t === 'zset' ? cur.v : []);
          v.set(m, Number(r));
          return { t, v };
        },
      };
    }
    case 'stream':
      return {
        args: ['XADD', key, '*', 'type', 'write', 'by', tag],
        apply: (r, cur) => ({ t, v: [...(cur?.t === 'stream' ? cur.v : []), [String(r), ['type', 'write', 'by', tag]]] }),
      };
  }
}

/** One client: a connection to rehome on one db and the share of keys it owns. */
class Client {
  private n = 0;
  private readonly redis: Redis;

  constructor(
    private readonly id: number,
    private readonly model: DbModel,
    /** This client owns seeded keys i with i % shares === share. */
    private readonly share: number,
    private readonly shares: number,
    private readonly stats: WorkloadStats,
    port: number,
  ) {
    // No silent resend after a dropped connection: a write must not run twice unseen, and every
    // failure must count as an error.
    this.redis = new Redis({
      port,
      host: '127.0.0.1',
      db: model.db,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
    });
    this.redis.on('error', () => {});
  }

  connect(): Promise<void> {
    return this.redis.connect();
  }

  disconnect(): void {
    this.redis.disconnect();
  }

  /** An owned seeded key: 70% of picks from a hot set of HOT_KEYS keys, the rest uniform. */
  private pickSeeded(): number {
    const owned = Math.max(1, Math.floor((this.model.seeded - 1 - this.share) / this.shares) + 1);
    const range = Math.random() < 0.7 ? Math.min(HOT_KEYS, owned) : owned;
    return this.share + this.shares * Math.floor(Math.random() * range);
  }

  private current(key: string, seed: () => Value | null): Value | null {
    const c = this.model.changed.get(key);
    return c ? c.v : seed();
  }

  private set(key: string, t: ValueType, v: Value | null, seededTtl: boolean): void {
    const prev = this.model.changed.get(key);
    this.model.changed.set(key, { t, v, ttlLost: (prev?.ttlLost ?? false) || (v === null && seededTtl) });
  }

  private fail(what: string): void {
    if (this.stats.samples.length < 5) this.stats.samples.push(what);
  }

  /** One operation: a read that checks its value, a write, a delete, a new key, MGET or MULTI. */
  async step(): Promise<void> {
    const r = Math.random();
    const n = ++this.n;
    const readCreated = this.model.created.length > 0 && Math.random() < 0.1;
    if (r < 0.55) {
      this.stats.reads++;
      let key: string;
      let t: ValueType;
      let expected: Value | null;
      if (readCreated) {
        key = this.model.created[Math.floor(Math.random() * this.model.created.length)]!;
        const c = this.model.changed.get(key);
        if (!c) return;
        ({ t, v: expected } = c);
      } else {
        const i = this.pickSeeded();
        const s = seedKey(this.model.db, i);
        key = s.key;
        t = s.value.t;
        expected = this.current(key, () => s.value);
      }
      const reply = await this.redis.call(...(readCommand(t, key) as [string, ...string[]]));
      if (this.model.uncertain.has(key)) return;
      const diff = compare(expected, t, reply);
      if (diff) {
        this.stats.wrong++;
        this.fail(`db${this.model.db} '${key}': ${diff}`);
      }
      return;
    }
    this.stats.writes++;
    if (r < 0.85) {
      const i = this.pickSeeded();
      const s = seedKey(this.model.db, i);
      await this.write(s.key, s.value.t, writeOp(i, s.key, s.value.t, n, this.id), () => s.value, s.ttl > 0);
    } else if (r < 0.9) {
      const key = `new:c${this.id}:${n}`;
      const hash = n % 2 === 0;
      const op: Op = hash
        ? { args: ['HSET', key, 'by', `c${this.id}`, 'n', n], apply: () => ({ t: 'hash', v: new Map([['by', `c${this.id}`], ['n', String(n)]]) }) }
        : { args: ['SET', key, `created by client ${this.id} (#${n})`], apply: () => ({ t: 'string', v: `created by client ${this.id} (#${n})` }) };
      try {
        await this.write(key, hash ? 'hash' : 'string', op, () => null, false);
      } finally {
        // Listed only once written, so any client of the db may read it back.
        this.model.created.push(key);
      }
    } else if (r < 0.92) {
      const s = seedKey(this.model.db, this.pickSeeded());
      const existed = this.current(s.key, () => s.value) !== null;
      try {
        const reply = await this.redis.del(s.key);
        this.set(s.key, s.value.t, null, s.ttl > 0);
        if (reply !== (existed ? 1 : 0) && !this.model.uncertain.has(s.key)) {
          this.stats.wrong++;
          this.fail(`db${this.model.db} DEL '${s.key}' answered ${reply}, expected ${existed ? 1 : 0}`);
        }
      } catch (e) {
        this.model.uncertain.add(s.key);
        throw e;
      }
    } else if (r < 0.96) {
      // MGET of several owned keys: non-strings and deleted keys read as nil.
      this.stats.reads++;
      const keys = Array.from({ length: 4 }, () => seedKey(this.model.db, this.pickSeeded()));
      const reply = (await this.redis.mget(...keys.map((k) => k.key))) as Array<string | null>;
      keys.forEach((k, j) => {
        if (this.model.uncertain.has(k.key)) return;
        const cur = this.current(k.key, () => k.value);
        const want = cur?.t === 'string' ? cur.v : null;
        if (reply[j] !== want) {
          this.stats.wrong++;
          this.fail(`db${this.model.db} MGET '${k.key}': expected ${JSON.stringify(want)?.slice(0, 40)}, got ${JSON.stringify(reply[j])?.slice(0, 40)}`);
        }
      });
    } else {
      // MULTI/EXEC changing two owned keys at once.
      const a = this.pickSeeded();
      let b = this.pickSeeded();
      if (b === a) b = a + this.shares < this.model.seeded ? a + this.shares : a;
      const ks = (a === b ? [a] : [a, b]).map((i) => ({ i, s: seedKey(this.model.db, i) }));
      const ops = ks.map(({ i, s }, j) => writeOp(i, s.key, s.value.t, n * 2 + j, this.id));
      const m = this.redis.multi();
      for (const op of ops) m.call(...(op.args as [string, ...string[]]));
      let res: Array<[Error | null, unknown]> | null;
      try {
        res = await m.exec();
      } catch (e) {
        for (const { s } of ks) this.model.uncertain.add(s.key);
        throw e;
      }
      if (!res) throw new Error('EXEC aborted');
      ks.forEach(({ s }, j) => {
        const [err, reply] = res[j]!;
        if (err) {
          this.model.uncertain.add(s.key);
          throw err;
        }
        this.set(s.key, s.value.t, ops[j]!.apply(reply, this.current(s.key, () => s.value)), s.ttl > 0);
      });
    }
  }

  private async write(key: string, t: ValueType, op: Op, seed: () => Value | null, seededTtl: boolean): Promise<void> {
    let reply: unknown;
    try {
      reply = await this.redis.call(...(op.args as [string, ...string[]]));
    } catch (e) {
      this.model.uncertain.add(key);
      throw e;
    }
    const cur = this.current(key, seed);
    this.set(key, t, op.apply(reply, cur === null ? null : cloneValue(cur)), seededTtl);
  }
}

/** Several clients, spread over the dbs, each running operations back to back until stopped. */
export class Workload {
  readonly stats: WorkloadStats = { ops: 0, reads: 0, writes: 0, errors: 0, wrong: 0, latencies: [], latenciesDrained: [], drained: false, samples: [] };
  private readonly clients: Client[] = [];
  private running = false;
  private loops: Array<Promise<void>> = [];

  constructor(port: number, readonly models: DbModel[], clientsPerDb: number) {
    let id = 0;
    for (const m of models) {
      for (let s = 0; s < clientsPerDb; s++) this.clients.push(new Client(id++, m, s, clientsPerDb, this.stats, port));
    }
  }

  get size(): number {
    return this.clients.length;
  }

  async start(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.connect()));
    this.running = true;
    this.loops = this.clients.map((c) => this.loop(c));
  }

  private async loop(c: Client): Promise<void> {
    while (this.running) {
      const t0 = performance.now();
      try {
        await c.step();
      } catch (e) {
        this.stats.errors++;
        if (this.stats.samples.length < 5) this.stats.samples.push((e as Error).message);
      }
      (this.stats.drained ? this.stats.latenciesDrained : this.stats.latencies).push(performance.now() - t0);
      this.stats.ops++;
    }
  }

  /** Stops after each client's current operation, then disconnects. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    for (const c of this.clients) c.disconnect();
  }

  /** Disconnects at once (interrupted demo). */
  abort(): void {
    this.running = false;
    for (const c of this.clients) c.disconnect();
  }
}

/** The q-quantile of a list of numbers (sorts it). */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
}

/** Result of checking the new server against the workload's model. */
export interface ContentCheck {
  checked: number;
  wrong: number;
  /** Keys expected on the new server, and the keys it has (DBSIZE), summed over the dbs. */
  expectedKeys: number;
  actualKeys: number;
  /** Keys with a TTL expected, and found (INFO keyspace expires). */
  expectedTtl: number;
  actualTtl: number;
  samples: string[];
}

/**
 * Checks the new server (on `port`, read directly) against the model, key by key: every seeded
 * key holds its seeded value or what the workload made of it, every created key holds what was
 * written, deleted keys are gone; then the key and TTL counts per db. Each batch's replies are
 * compared byte for byte with the replies the model predicts.
 */
export async function checkContent(port: number, models: DbModel[]): Promise<ContentCheck> {
  const out: ContentCheck = { checked: 0, wrong: 0, expectedKeys: 0, actualKeys: 0, expectedTtl: 0, actualTtl: 0, samples: [] };
  const conn = await RawConn.connect(port);
  try {
    const info = await conn.send(resp(['INFO', 'keyspace']), 1);
    const keyspace = parseKeyspace(info.buf.toString('latin1'));
    for (const m of models) {
      await conn.send(resp(['SELECT', m.db]), 1);
      let batch: Array<{ key: string; replies: number; reply: string }> = [];
      let cmds = '';
      const inFlight: Array<Promise<void>> = [];
      const flush = (): void => {
        const keys = batch;
        const replies = keys.reduce((a, k) => a + k.replies, 0);
        inFlight.push(conn.send(cmds, replies).then((r) => compareBatch(r, keys, m.db, out)));
        batch = [];
        cmds = '';
      };
      const add = (key: string, v: Value | null): void => {
        const c = checkRequest(key, v);
        batch.push({ key, replies: c.replies, reply: c.reply });
        cmds += c.cmds;
        if (batch.length >= 1_000) flush();
      };
      let alive = 0;
      let ttlLost = 0;
      for (let i = 0; i < m.seeded; i++) {
        const name = m.names[i]!;
        if (m.uncertain.has(name)) continue;
        const c = m.changed.get(name);
        const s = c ? null : seedKey(m.db, i);
        const v = c ? c.v : s!.value;
        if (v !== null) alive++;
        if (c?.ttlLost && seedKey(m.db, i).ttl > 0) ttlLost++;
        add(name, v);
      }
      for (const key of m.created) {
        const c = m.changed.get(key);
        if (!c || m.uncertain.has(key)) continue;
        if (c.v !== null) alive++;
        add(key, c.v);
      }
      if (batch.length > 0) flush();
      await Promise.all(inFlight);
      out.expectedKeys += alive;
      out.expectedTtl += m.seededWithTtl - ttlLost;
      const ks = keyspace.get(m.db);
      out.actualKeys += ks?.keys ?? 0;
      out.actualTtl += ks?.expires ?? 0;
    }
  } finally {
    conn.close();
  }
  return out;
}

/** Compares a batch's replies with the predicted ones; on a difference, finds the keys. */
function compareBatch(r: Replies, keys: Array<{ key: string; replies: number; reply: string }>, db: number, out: ContentCheck): void {
  out.checked += keys.length;
  const want = keys.map((k) => k.reply).join('');
  if (r.buf.length === want.length && r.buf.toString('latin1') === want) return;
  let n = 0;
  let start = 0;
  for (const k of keys) {
    const end = r.ends[n + k.replies - 1]!;
    const got = r.buf.toString('latin1', start, end);
    n += k.replies;
    start = end;
    if (got === k.reply) continue;
    out.wrong++;
    if (out.samples.length < 5) out.samples.push(`db${db} '${k.key}': expected ${JSON.stringify(k.reply.slice(0, 60))}, got ${JSON.stringify(got.slice(0, 60))}`);
  }
}

function parseKeyspace(info: string): Map<number, { keys: number; expires: number }> {
  const m = new Map<number, { keys: number; expires: number }>();
  for (const line of info.split('\r\n')) {
    const g = /^db(\d+):keys=(\d+),expires=(\d+)/.exec(line);
    if (g) m.set(Number(g[1]), { keys: Number(g[2]), expires: Number(g[3]) });
  }
  return m;
}
