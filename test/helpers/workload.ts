/**
 * Workloads for consistency tests under faults (issue 5), reusable by any test that needs to prove
 * "no acknowledged write lost".
 *
 * Counters: startCounterWorkload() runs `clients` connections, spread over `urls` (proxies), each
 * sending one INCR at a time to a random counter `${prefix}${i}`. Every INCR sent ends up counted
 * exactly once, per counter, as
 *   - acked:   an integer reply came back (the increment happened, exactly once);
 *   - unknown: an error reply, a timeout or a dropped connection (it may or may not have happened).
 * Clients never resend a command; a connection that fails is dropped (its in-flight INCR counted
 * unknown) and a new one is dialled after a short pause, so the proxy may disappear and come back on
 * the same address. checkCounters() then asserts, for every counter,
 *   base + acked <= final <= base + acked + unknown.
 *
 * Payloads: seedPayloads() writes string keys of random sizes (binary values, a few binary key
 * names) derived from a seed, so checkPayloads() regenerates and compares them byte for byte.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Redis } from 'ioredis';
import { encodeCommand } from './resp.js';
import { prng, sleep } from './util.js';

// ------------------------------------------------------------------ counters

/** Options of startCounterWorkload(). */
export interface CounterWorkloadOptions {
  /** Proxy addresses, redis://host:port (rediss:// for TLS); client c uses urls[c % urls.length]. */
  urls: string[];
  /** For rediss:// URLs: the CA and whatever else the TLS connection needs. */
  tls?: tls.ConnectionOptions;
  clients: number;
  /** Counters are `${prefix}0` .. `${prefix}${counters - 1}`. */
  counters: number;
  prefix?: string;
  db?: number;
  seed: number;
  /** A command without a reply after this long counts as unknown and its connection is dropped. */
  commandTimeoutMs?: number;
  /** Starting values (seedCounters()'s result); zeros when absent. */
  bases?: readonly number[];
  /** Half the INCRs go to this many hot counters (0..hot-1), the rest anywhere. Default 50. */
  hot?: number;
  /** Pause between a failure and the next dial. Default 50 ms. */
  reconnectDelayMs?: number;
}

/** What the workload did, per counter and in total. */
export interface CounterResults {
  prefix: string;
  db: number;
  counters: number;
  bases: number[];
  /** acked[i]: INCRs of counter i that got an integer reply. */
  acked: number[];
  /** unknown[i]: INCRs of counter i that got an error, timed out or lost their connection. */
  unknown: number[];
  totals: {
    acked: number;
    unknown: number;
    /** Connections dialled (first ones included). */
    connects: number;
    /** Dials that failed (nothing listening, refused). */
    connectFailures: number;
    /** Unknown outcomes by cause, e.g. "TRYAGAIN rehome: target unavailable" or "timeout". */
    unknownByCause: Record<string, number>;
  };
  durationMs: number;
}

/** Summary returned by checkCounters(). */
export interface CounterSummary {
  counters: number;
  touched: number;
  acked: number;
  unknown: number;
  /** Sum over counters of final - base. */
  applied: number;
  /** Unknown INCRs that turned out applied (applied - acked). */
  unknownApplied: number;
}

/** Seeds counters `${prefix}i` = base (1000..9999, from the seed) in `db` with pipelines; returns the bases. */
export async function seedCounters(
  c: Redis,
  opts: { counters: number; prefix?: string; db?: number; seed: number },
): Promise<number[]> {
  const prefix = opts.prefix ?? 'ctr:';
  const rnd = prng(opts.seed ^ 0x5eed);
  const bases = Array.from({ length: opts.counters }, () => 1000 + Math.floor(rnd() * 9000));
  await c.select(opts.db ?? 0);
  for (let i = 0; i < opts.counters; i += 1000) {
    const p = c.pipeline();
    for (let j = i; j < Math.min(opts.counters, i + 1000); j++) p.set(`${prefix}${j}`, String(bases[j]));
    await p.exec();
  }
  await c.select(0);
  return bases;
}

/** A short cause for the unknown-by-cause tally: the error code (and rehome's own reason), or the local failure. */
function causeOf(text: string): string {
  const m = /^([A-Z]+(?: rehome: [a-z ]*[a-z])?)/.exec(text) ?? /^([^:(]+)/.exec(text);
  return (m?.[1] ?? text).trim().slice(0, 60);
}

/** One connection: one INCR at a time; resolves to the reply line or rejects with the cause. */
class CounterConnection {
  private buf = '';
  private waiter: { resolve: (line: string) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null = null;
  private gone: Error | null = null;

  private constructor(
    private readonly sock: net.Socket,
    private readonly timeoutMs: number,
  ) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e) => this.fail(new Error(`connection error: ${e.message}`)));
    sock.on('close', () => this.fail(new Error('connection closed')));
  }

  static open(host: string, port: number, timeoutMs: number, tlsOpts?: tls.ConnectionOptions): Promise<CounterConnection> {
    return new Promise((resolve, reject) => {
      const sock = tlsOpts ? tls.connect({ ...tlsOpts, host, port }) : net.connect({ host, port });
      const t = setTimeout(() => {
        sock.destroy();
        reject(new Error('connect timeout'));
      }, timeoutMs);
      sock.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
      sock.once(tlsOpts ? 'secureConnect' : 'connect', () => {
        clearTimeout(t);
        sock.removeAllListeners('error');
        sock.setNoDelay(true);
        resolve(new CounterConnection(sock, timeoutMs));
      });
    });
  }

  private onData(d: string): void {
    this.buf += d;
    const eol = this.buf.indexOf('\r\n');
    if (eol < 0) return;
    const line = this.buf.slice(0, eol);
    this.buf = this.buf.slice(eol + 2);
    const w = this.waiter;
    this.waiter = null;
    if (w) {
      clearTimeout(w.timer);
      w.resolve(line);
    } else {
      // A reply nobody waits for: this connection is out of step.
      this.fail(new Error(`unexpected reply ${JSON.stringify(line.slice(0, 80))}`));
    }
  }

  private fail(e: Error): void {
    if (this.gone === null) this.gone = e;
    this.sock.destroy();
    const w = this.waiter;
    this.waiter = null;
    if (w) {
      clearTimeout(w.timer);
      w.reject(this.gone);
    }
  }

  /** Sends one command whose reply is a single line (+, -, :). */
  send(cmd: Buffer): Promise<string> {
    if (this.gone) return Promise.reject(this.gone);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error('timeout')), this.timeoutMs);
      this.waiter = { resolve, reject, timer };
      this.sock.write(cmd);
    });
  }

  close(): void {
    this.fail(new Error('closed by the workload'));
  }
}

/**
 * Starts the counter workload; stop() ends it (in-flight INCRs finish or time out) and returns the
 * tallies. The clients run until stop(), whatever happens to the servers behind `urls`.
 */
export function startCounterWorkload(opts: CounterWorkloadOptions): {
  /** INCRs acknowledged so far (while it runs). */
  ackedSoFar(): number;
  stop(): Promise<CounterResults>;
} {
  const prefix = opts.prefix ?? 'ctr:';
  const db = opts.db ?? 0;
  const timeoutMs = opts.commandTimeoutMs ?? 5_000;
  const hot = Math.min(opts.hot ?? 50, opts.counters);
  const reconnectDelayMs = opts.reconnectDelayMs ?? 50;
  const bases = opts.bases ? [...opts.bases] : new Array<number>(opts.counters).fill(0);
  if (bases.length !== opts.counters) throw new Error(`bases has ${bases.length} values for ${opts.counters} counters`);
  const acked = new Array<number>(opts.counters).fill(0);
  const unknown = new Array<number>(opts.counters).fill(0);
  const totals: CounterResults['totals'] = { acked: 0, unknown: 0, connects: 0, connectFailures: 0, unknownByCause: {} };
  const incrs = Array.from({ length: opts.counters }, (_, i) => encodeCommand(['INCR', `${prefix}${i}`]));
  const select = encodeCommand(['SELECT', db]);
  const t0 = Date.now();
  let stopped = false;
  const live = new Set<CounterConnection>();

  const markUnknown = (i: number, cause: string) => {
    unknown[i]!++;
    totals.unknown++;
    totals.unknownByCause[cause] = (totals.unknownByCause[cause] ?? 0) + 1;
  };

  const runClient = async (c: number): Promise<void> => {
    const url = new URL(opts.urls[c % opts.urls.length]!);
    const host = url.hostname;
    const port = Number(url.port);
    const rnd = prng((opts.seed * 7919 + c * 104729) >>> 0);
    let conn: CounterConnection | null = null;
    while (!stopped) {
      if (conn === null) {
        try {
          totals.connects++;
          conn = await CounterConnection.open(host, port, timeoutMs, url.protocol === 'rediss:' ? (opts.tls ?? {}) : undefined);
          live.add(conn);
          if (db !== 0) {
            const r = await conn.send(select);
            if (r !== '+OK') throw new Error(`SELECT ${db}: ${r}`);
          }
        } catch {
          totals.connectFailures++;
          if (conn) {
            conn.close();
            live.delete(conn);
          }
          conn = null;
          await sleep(reconnectDelayMs);
          continue;
        }
      }
      const i = rnd() < 0.5 ? Math.floor(rnd() * hot) : Math.floor(rnd() * opts.counters);
      try {
        const line = await conn.send(incrs[i]!);
        if (line.startsWith(':')) {
          acked[i]!++;
          totals.acked++;
        } else {
          // An error reply: the proxy refused, or the target did. Counted unknown either way
          // (the brief for this workload: only a reply proves the increment).
          markUnknown(i, causeOf(line.slice(1)));
        }
      } catch (e) {
        markUnknown(i, causeOf((e as Error).message));
        conn.close();
        live.delete(conn);
        conn = null;
        await sleep(reconnectDelayMs);
      }
    }
    if (conn) {
      conn.close();
      live.delete(conn);
    }
  };

  const loops = Array.from({ length: opts.clients }, (_, c) => runClient(c));
  return {
    ackedSoFar: () => totals.acked,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      for (const c of live) c.close();
      return { prefix, db, counters: opts.counters, bases, acked, unknown, totals, durationMs: Date.now() - t0 };
    },
  };
}

/**
 * Reads every counter with `read` (a few dozen at a time) and asserts
 * base + acked <= final <= base + acked + unknown for each; throws listing the first violations.
 */
export async function checkCounters(
  results: CounterResults,
  read: (key: string) => Promise<number>,
): Promise<CounterSummary> {
  const finals = new Array<number>(results.counters);
  const width = 64;
  for (let i = 0; i < results.counters; i += width) {
    const idx = Array.from({ length: Math.min(width, results.counters - i) }, (_, j) => i + j);
    const vals = await Promise.all(idx.map((j) => read(`${results.prefix}${j}`)));
    idx.forEach((j, k) => (finals[j] = vals[k]!));
  }
  const bad: string[] = [];
  const summary: CounterSummary = { counters: results.counters, touched: 0, acked: 0, unknown: 0, applied: 0, unknownApplied: 0 };
  for (let i = 0; i < results.counters; i++) {
    const base = results.bases[i]!;
    const a = results.acked[i]!;
    const u = results.unknown[i]!;
    const applied = finals[i]! - base;
    if (a + u > 0) summary.touched++;
    summary.acked += a;
    summary.unknown += u;
    summary.applied += Number.isFinite(applied) ? applied : 0;
    if (!(applied >= a && applied <= a + u)) {
      bad.push(`${results.prefix}${i} (db ${results.db}): base ${base}, final ${finals[i]}, acked ${a}, unknown ${u}`);
    }
  }
  summary.unknownApplied = summary.applied - summary.acked;
  if (bad.length > 0) {
    throw new Error(
      `${bad.length} counter(s) break acked <= final - base <= acked + unknown:\n  ${bad.slice(0, 20).join('\n  ')}${bad.length > 20 ? '\n  ...' : ''}`,
    );
  }
  return summary;
}

// ------------------------------------------------------------------ payloads

/** A set of payload keys that seedPayloads() wrote and checkPayloads() can verify. */
export interface PayloadSet {
  prefix: string;
  db: number;
  count: number;
  seed: number;
  maxBytes: number;
  /** Total bytes of the values. */
  bytes: number;
}

/** The key name of payload i: ASCII, except every 97th, which has binary bytes in its name. */
export function payloadKey(set: Pick<PayloadSet, 'prefix'>, i: number): Buffer {
  return i % 97 === 13
    ? Buffer.concat([Buffer.from(`${set.prefix}bin:`), Buffer.from([0xff, 0x00, 0x0d, 0x0a, 0x80]), Buffer.from(String(i))])
    : Buffer.from(`${set.prefix}${i}`);
}

/** The value of payload i: a size skewed to small (0 .. maxBytes), bytes from the seed. */
export function payloadValue(set: Pick<PayloadSet, 'seed' | 'maxBytes'>, i: number): Buffer {
  const rnd = prng((set.seed * 31 + i * 2654435761) >>> 0);
  const r = rnd();
  const size = Math.floor(r * r * r * set.maxBytes);
  const out = Buffer.allocUnsafe(size);
  let k = 0;
  for (; k + 4 <= size; k += 4) out.writeUInt32LE(Math.floor(rnd() * 4294967296), k);
  for (; k < size; k++) out[k] = Math.floor(rnd() * 256);
  return out;
}

/** Writes `count` payload keys into `db` with pipelines (client left on db 0). */
export async function seedPayloads(
  c: Redis,
  opts: { count: number; prefix?: string; db?: number; seed: number; maxBytes?: number },
): Promise<PayloadSet> {
  const set: PayloadSet = {
    prefix: opts.prefix ?? 'pay:',
    db: opts.db ?? 0,
    count: opts.count,
    seed: opts.seed,
    maxBytes: opts.maxBytes ?? 8192,
    bytes: 0,
  };
  await c.select(set.db);
  for (let i = 0; i < set.count; i += 500) {
    const p = c.pipeline();
    for (let j = i; j < Math.min(set.count, i + 500); j++) {
      const v = payloadValue(set, j);
      set.bytes += v.length;
      p.set(payloadKey(set, j), v);
    }
    await p.exec();
  }
  await c.select(0);
  return set;
}

/**
 * Reads every payload key through `c` (a server or a proxy; SELECTs the set's db, left on db 0)
 * and returns the keys that are missing or differ, as printable names (empty: all intact).
 */
export async function checkPayloads(set: PayloadSet, c: Redis): Promise<string[]> {
  const bad: string[] = [];
  await c.select(set.db);
  for (let i = 0; i < set.count; i += 500) {
    const idx = Array.from({ length: Math.min(500, set.count - i) }, (_, j) => i + j);
    const vals = await c.mgetBuffer(...idx.map((j) => payloadKey(set, j)));
    idx.forEach((j, k) => {
      const got = vals[k];
      const want = payloadValue(set, j);
      if (!got) bad.push(`${JSON.stringify(payloadKey(set, j).toString('latin1'))} missing`);
      else if (!got.equals(want)) bad.push(`${JSON.stringify(payloadKey(set, j).toString('latin1'))} differs (${got.length} bytes, want ${want.length})`);
    });
  }
  await c.select(0);
  return bad;
}
