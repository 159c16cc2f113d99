/**
 * The rehearsal's checking workload: clients that increment counters and add set members with
 * known expected values, through whichever endpoint their connection string names (the old
 * server, a rehome process, the new server), and count every error they see.
 *
 * Each client owns a disjoint share of one db's keys, so it knows what every reply must be: INCR
 * answers the model's value plus one, GET and SCARD answer the model's. A command that fails
 * (an error reply, a dropped connection, no reply) may or may not have run: the client reads the
 * key again until a read succeeds and accepts only the two possible values (ran / did not run);
 * anything else is a wrong value. Nothing is retried by the client library, so every failure is
 * seen and counted: this is what an application sees with retries off.
 */
import { Redis } from 'ioredis';

/** Where a client connects: a host:port and the password applications use. */
export interface Endpoint {
  host: string;
  port: number;
  password: string | undefined;
}

/** The keys of one db and their expected values. */
export interface DbModel {
  db: number;
  /** Counter key -> expected value. */
  counters: Map<string, number>;
  /** Set key -> expected members. */
  sets: Map<string, Set<string>>;
}

export interface WorkloadStats {
  ops: number;
  /** Client-visible errors (error replies, dropped connections, no reply), by kind. */
  errorsByKind: Map<string, number>;
  /** The first full message of each kind. */
  firstMessage: Map<string, string>;
  /** Errors by what was going on when the failed command was sent (`during`). */
  errorsDuring: Map<string, number>;
  /** What is going on now, set by whoever drives the workload. */
  during: string;
  /** Replies or reads that no history of the client's own commands explains. */
  wrong: number;
  /** The first few errors and wrong values, with the key. */
  samples: string[];
}

const MAX_SAMPLES = 20;

/** Seeds `perDb` keys in each db: half counters (key i starts at i), half sets of three members. */
export async function seed(ep: Endpoint, dbs: number[], perDb: number): Promise<DbModel[]> {
  const models: DbModel[] = [];
  for (const db of dbs) {
    const c = connect(ep, db, false);
    try {
      const m: DbModel = { db, counters: new Map(), sets: new Map() };
      const p = c.pipeline();
      for (let i = 0; i < perDb; i++) {
        if (i % 2 === 0) {
          const k = `rh:cnt:${db}:${i}`;
          p.set(k, String(i));
          m.counters.set(k, i);
        } else {
          const k = `rh:set:${db}:${i}`;
          const members = ['a', 'b', `m${i}`];
          p.sadd(k, ...members);
          m.sets.set(k, new Set(members));
        }
      }
      await p.exec();
      models.push(m);
    } finally {
      c.disconnect();
    }
  }
  return models;
}

function connect(ep: Endpoint, db: number, retry: boolean): Redis {
  const c = new Redis({
    host: ep.host,
    port: ep.port,
    db,
    ...(ep.password !== undefined ? { password: ep.password } : {}),
    // Every failure reaches the caller: no resending of commands in flight, no retries.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: 5_000,
    retryStrategy: retry ? (n: number) => Math.min(n * 50, 500) : () => null,
    enableReadyCheck: false,
  });
  c.on('error', () => {});
  return c;
}

/** A short name for an error: its code (TRYAGAIN, READONLY...) or what ioredis's message means. */
function kindOf(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const code = /^([A-Z][A-Z_]+) /.exec(msg);
  if (code) return `${code[1]}${/phase/.test(msg) ? ' (phase changed)' : ''}`;
  // With retries off, ioredis fails a command in flight on a dropped connection with one of these.
  if (/max retries per request|Connection is closed/.test(msg)) return 'connection closed with the command in flight';
  if (/timed out/.test(msg)) return 'no reply within 5 s';
  return msg.split('\n')[0]!.slice(0, 60);
}

/**
 * Waits (up to 10 s) until the connection is up: a command sent while it reconnects would fail
 * at once (no retries), an error of the client's own making rather than one rehome caused.
 */
async function ready(c: Redis): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (c.status !== 'ready' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

/** One client: a loop of commands on its own keys through the endpoint it is pointed at. */
class Client {
  private conn: Redis;
  private swapTo: Endpoint | null = null;
  private stopped = false;
  private n = 0;
  /** What was going on when the current command was sent (errors are counted under it). */
  private sentDuring = '';
  readonly done: Promise<void>;

  constructor(
    private ep: Endpoint,
    private readonly model: DbModel,
    private readonly counters: string[],
    private readonly sets: string[],
    private readonly id: number,
    private readonly stats: WorkloadStats,
  ) {
    this.conn = connect(ep, model.db, true);
    this.done = this.run();
  }

  /** Reconnects to `ep` between two commands, as a service restarted with a new connection string. */
  swap(ep: Endpoint): void {
    this.swapTo = ep;
  }

  /** A swap asked for and not done yet. */
  get swapping(): boolean {
    return this.swapTo !== null;
  }

  stop(): Promise<void> {
    this.stopped = true;
    return this.done;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.applySwap();
      await this.step();
      // A pause between commands: the rehearsal is about correctness, not load.
      await new Promise((r) => setTimeout(r, 2));
    }
    this.conn.disconnect();
  }

  private async step(): Promise<void> {
    await ready(this.conn);
    this.sentDuring = this.stats.during;
    const i = this.n++;
    const useSet = this.sets.length > 0 && (this.counters.length === 0 || i % 2 === 1);
    const keys = useSet ? this.sets : this.counters;
    const key = keys[(i >> 1) % keys.length]!;
    this.stats.ops++;
    if (useSet) await this.setStep(key, i);
    else await this.counterStep(key, i);
  }

  private async counterStep(key: string, i: number): Promise<void> {
    const want = this.model.counters.get(key)!;
    try {
      if (i % 8 === 0) {
        const v = await this.conn.get(key);
        if (v !== String(want)) this.wrongValue(`GET ${key} -> ${v}, expected ${want}`);
        return;
      }
      const v = await this.conn.incr(key);
      this.model.counters.set(key, want + 1);
      if (v !== want + 1) {
        this.wrongValue(`INCR ${key} -> ${v}, expected ${want + 1}`);
        this.model.counters.set(key, v);
      }
    } catch (e) {
      this.error(e, `counter ${key}`);
      if (i % 8 === 0) return;
      // The INCR may have run: the value is want or want + 1.
      const v = Number(await this.readUntilOk(() => this.conn.get(key)));
      if (v === want || v === want + 1) this.model.counters.set(key, v);
      else {
        this.wrongValue(`after a failed INCR ${key} reads ${v}, expected ${want} or ${want + 1}`);
        this.model.counters.set(key, v);
      }
    }
  }

  private async setStep(key: string, i: number): Promise<void> {
    const want = this.model.sets.get(key)!;
    try {
      if (i % 8 === 1) {
        const n = await this.conn.scard(key);
        if (n !== want.size) this.wrongValue(`SCARD ${key} -> ${n}, expected ${want.size}`);
        return;
      }
      const member = `c${this.id}-${i}`;
      try {
        const added = await this.conn.sadd(key, member);
        want.add(member);
        if (added !== 1) this.wrongValue(`SADD ${key} ${member} -> ${added}, expected 1`);
      } catch (e) {
        this.error(e, `set ${key}`);
        // The SADD may have run: the member is there or not.
        const there = Number(await this.readUntilOk(() => this.conn.sismember(key, member)));
        if (there === 1) want.add(member);
      }
    } catch (e) {
      this.error(e, `set ${key}`);
    }
  }

  /** Retries a read until it succeeds (each failure counted); the connection reconnects by itself. */
  private async readUntilOk<T>(read: () => Promise<T>): Promise<T> {
    for (;;) {
      await ready(this.conn);
      this.sentDuring = this.stats.during;
      try {
        return await read();
      } catch (e) {
        this.error(e, 'read after an error');
        await new Promise((r) => setTimeout(r, 50));
        this.applySwap();
      }
    }
  }

  private applySwap(): void {
    if (this.swapTo === null) return;
    this.ep = this.swapTo;
    this.swapTo = null;
    this.reconnect();
  }

  private reconnect(): void {
    this.conn.disconnect();
    this.conn = connect(this.ep, this.model.db, true);
  }

  private error(e: unknown, what: string): void {
    const k = kindOf(e);
    this.stats.errorsByKind.set(k, (this.stats.errorsByKind.get(k) ?? 0) + 1);
    this.stats.errorsDuring.set(this.sentDuring, (this.stats.errorsDuring.get(this.sentDuring) ?? 0) + 1);
    const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
    if (!this.stats.firstMessage.has(k)) this.stats.firstMessage.set(k, msg);
    // Replies come in order: behind a command that got none, every later one waits too. A new
    // connection, as an application would open, so one missing reply is counted once.
    if (/timed out/.test(msg)) this.reconnect();
    if (this.stats.samples.length < MAX_SAMPLES) this.stats.samples.push(`client ${this.id} (${what} on ${this.ep.port}, sent during ${this.sentDuring}): ${k}`);
  }

  private wrongValue(what: string): void {
    this.stats.wrong++;
    if (this.stats.samples.length < MAX_SAMPLES) this.stats.samples.push(`client ${this.id}: wrong value: ${what}`);
  }
}

/** Several clients, each on its own keys of one db, spread over the endpoints given. */
export class Workload {
  readonly stats: WorkloadStats = { ops: 0, errorsByKind: new Map(), firstMessage: new Map(), errorsDuring: new Map(), during: 'start', wrong: 0, samples: [] };
  private readonly clients: Client[] = [];

  constructor(models: DbModel[], clients: number, endpoints: Endpoint[]) {
    for (let c = 0; c < clients; c++) {
      const model = models[c % models.length]!;
      // The clients of one db split its keys: client j of k takes every k-th key.
      const peers = Math.ceil((clients - (c % models.length)) / models.length);
      const j = Math.floor(c / models.length);
      const mine = <T>(keys: T[]) => keys.filter((_, i) => i % peers === j);
      this.clients.push(new Client(endpoints[c % endpoints.length]!, model, mine([...model.counters.keys()]), mine([...model.sets.keys()]), c, this.stats));
    }
  }

  get size(): number {
    return this.clients.length;
  }

  get errors(): number {
    let n = 0;
    for (const v of this.stats.errorsByKind.values()) n += v;
    return n;
  }

  /** Points every client at the endpoints given (spread as at the start); each reconnects between commands. */
  swap(endpoints: Endpoint[]): void {
    this.clients.forEach((c, i) => c.swap(endpoints[i % endpoints.length]!));
  }

  /** Resolves once every client has reconnected after a swap. */
  async swapped(): Promise<void> {
    while (this.clients.some((c) => c.swapping)) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  stop(): Promise<void[]> {
    return Promise.all(this.clients.map((c) => c.stop()));
  }
}

/**
 * Compares a server with the models: every counter's value and every set's members, and no
 * other key in the models' dbs. Returns one line per difference (at most `max`) and their count.
 */
export async function checkServer(ep: Endpoint, models: DbModel[], max = 10): Promise<{ checked: number; wrong: number; lines: string[] }> {
  const out = { checked: 0, wrong: 0, lines: [] as string[] };
  const bad = (line: string) => {
    out.wrong++;
    if (out.lines.length < max) out.lines.push(line);
  };
  for (const m of models) {
    const c = connect(ep, m.db, false);
    try {
      const counters = [...m.counters];
      const values = counters.length > 0 ? await c.mget(...counters.map(([k]) => k)) : [];
      counters.forEach(([k, want], i) => {
        out.checked++;
        if (values[i] !== String(want)) bad(`db${m.db} ${k}: ${values[i] ?? 'missing'}, expected ${want}`);
      });
      const p = c.pipeline();
      for (const k of m.sets.keys()) p.smembers(k);
      const replies = (await p.exec()) ?? [];
      [...m.sets].forEach(([k, want], i) => {
        out.checked++;
        const got = new Set((replies[i]?.[1] as string[] | undefined) ?? []);
        if (got.size !== want.size || [...want].some((x) => !got.has(x))) bad(`db${m.db} ${k}: ${got.size} members, expected ${want.size}`);
      });
      const n = await c.dbsize();
      const expected = m.counters.size + m.sets.size;
      if (n !== expected) bad(`db${m.db}: ${n} keys, expected ${expected}`);
    } finally {
      c.disconnect();
    }
  }
  return out;
}
