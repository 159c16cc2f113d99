/**
 * Shared connections to the target ("lanes"): the commands of many clients that carry no
 * connection state (GET, SET, INCR, HSET...: see ShareKind in src/commands/table.ts) are sent over
 * a few connections instead of one per client, and the requests that arrive from all clients in
 * one turn of the event loop leave in one write.
 *
 * Why: with one connection per client, every request costs the proxy a write and a read on the
 * target side and costs the target a read, a write and an event-loop wake-up of its own. On a
 * lane, one write carries the requests of every client that sent something in this turn, and the
 * target answers them with one write (Redis serves the pipeline of one connection in one pass).
 *
 *   client A ──┐                       ┌──► reply to A
 *   client B ──┼─► lane: [A1 B1 C1] ──►│ target ──► [rA1 rB1 rC1] ─► reply scanner ─┼──► reply to B
 *   client C ──┘   (one write per turn)                                             └──► reply to C
 *
 * Replies come back in request order, so a FIFO of (client, entry) says whose each reply is.
 * A client keeps its own connection too, for its commands that are not shareable; it moves
 * between the two in order (send-queue.ts), and after a command that gives its connection state
 * (MULTI, AUTH, HELLO...) it uses only its own connection. Each db has lanes of its own, opened
 * when a client first uses that db (SELECT): a client's db is the one state a lane can share.
 *
 * A lane is named (CLIENT SETNAME rehome-e<epoch>-shared.<n>) and, with phases, the phase is
 * read after the name is set and before any client's command is sent (the fence of
 * src/phase/phase.ts, as for every other connection rehome makes). A lane that fails (closed,
 * killed, protocol error) answers every command in flight on it with an error naming the cause
 * (whether such a command ran is unknown, as on a dropped connection), and the next command
 * opens a new connection. The clients themselves stay connected.
 */
import type net from 'node:net';
import { encodeRequest, PING_REQUEST } from '../resp/request-framer.js';
import { ReplyScanner } from '../resp/reply-scanner.js';
import { SpanningReply } from '../resp/spanning-reply.js';
import { connectSocket, connectedEvent } from '../upstream/connect.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { Deque } from '../util/deque.js';
import type { SessionFence } from '../phase/phase.js';
import type { Entry } from './entry.js';

/** What a lane needs of a client session. */
export interface LaneOwner {
  readonly client: net.Socket;
  /** Marks the client's socket as corked by the reply chunk being handled (see onData). */
  laneStamp: number;
  /** The target's reply to `e`. */
  laneReply(e: Entry, reply: Buffer): void;
  /** `e` was in flight on a lane that failed: whether it ran is unknown. */
  laneFailed(e: Entry, reason: string): void;
}

/** The proxy's running totals (kept across phase switches, read by /status and /metrics). */
export interface LaneCounters {
  /** Commands sent on shared connections. */
  sharedCommands: number;
  /** Shared connections lost with commands in flight. */
  sharedFailures: number;
}

const enum LaneState {
  Idle,
  /** Connecting, naming, checking the fence: client requests wait in `parts`. */
  Opening,
  Ready,
}

/** Largest batch of requests copied into one buffer for its write (larger ones: writev). */
const COPY_MAX = 64 * 1024;

/** Every lane is one stamp space for corking: stamps only need to differ between chunks. */
let nextStamp = 1;

/** One shared connection to the target. */
export class SharedLane {
  private sock: net.Socket | null = null;
  private state = LaneState.Idle;
  /** Whose each outstanding reply is (null: the lane's own request, named in `internal`). */
  private readonly owners = new Deque<LaneOwner | null>();
  private readonly internal = new Deque<'name' | 'select' | 'ping'>();
  /** Something was sent since the last keep-alive tick. */
  private active = false;
  private keepalive: NodeJS.Timeout | null = null;
  private readonly entries = new Deque<Entry | null>();
  private scanner = new ReplyScanner();
  private readonly ends: number[] = [];
  /** Pieces of a reply that spans chunks. */
  private readonly spanning = new SpanningReply();
  /** Requests queued for the next write, and their total size. */
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private flushScheduled = false;
  private closed: string | null = null;
  /** Client sockets corked while one reply chunk is handed out. */
  private readonly corked: net.Socket[] = [];
  /** For /status. */
  connects = 0;
  lastFailure: string | null = null;

  constructor(
    private readonly endpoint: Endpoint,
    private readonly name: string,
    private readonly fence: SessionFence | null,
    private readonly counters: LaneCounters,
    private readonly keepaliveMs: number,
    private readonly db: number,
  ) {}

  /** Sends a client's request; its reply goes to owner.laneReply (or laneFailed). */
  send(owner: LaneOwner, e: Entry, bytes: Buffer): void {
    if (this.closed !== null) {
      owner.laneFailed(e, this.closed);
      return;
    }
    if (this.state === LaneState.Idle) this.open();
    this.active = true;
    this.counters.sharedCommands++;
    this.owners.push(owner);
    this.entries.push(e);
    this.parts.push(bytes);
    this.partsBytes += bytes.length;
    if (!this.flushScheduled && this.state === LaneState.Ready) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Fails everything in flight and refuses what comes later (the runtime is retired). */
  close(reason: string): void {
    if (this.closed !== null) return;
    this.closed = reason;
    if (this.keepalive !== null) clearInterval(this.keepalive);
    this.keepalive = null;
    this.fail(reason);
  }

  /**
   * A lane idle for keepaliveMs (--keepalive) gets a PING, so that a server `timeout` (idle clients closed)
   * does not close it just as a client's command is on its way: that command would fail though
   * the server never saw it.
   */
  private tick(): void {
    const sock = this.sock;
    if (sock === null || this.state !== LaneState.Ready || this.active || this.owners.length > 0) {
      this.active = false;
      return;
    }
    this.owners.push(null);
    this.entries.push(null);
    this.internal.push('ping');
    sock.write(PING_REQUEST);
  }

  private open(): void {
    this.state = LaneState.Opening;
    this.connects++;
    const sock = connectSocket(this.endpoint);
    sock.setNoDelay(true);
    this.sock = sock;
    let connected = false;
    sock.on(connectedEvent(this.endpoint), () => {
      connected = true;
    });
    sock.on('data', (chunk: Buffer) => {
      if (this.sock === sock) this.onData(chunk);
    });
    const gone = (why: string) => {
      if (this.sock !== sock) return;
      this.fail(connected ? `shared connection: ${why}` : `cannot connect to ${describeEndpoint(this.endpoint)}: ${why}`);
    };
    sock.on('error', (err) => gone(err.message));
    sock.on('close', () => gone('connection closed'));
    // The name goes first; client requests wait until it is set and the fence is checked. A
    // lane of another db selects it right behind the name, so it runs before any of them.
    this.owners.push(null);
    this.entries.push(null);
    this.internal.push('name');
    sock.write(encodeRequest([Buffer.from('CLIENT'), Buffer.from('SETNAME'), Buffer.from(this.name, 'latin1')]).raw);
    if (this.db !== 0) {
      this.owners.push(null);
      this.entries.push(null);
      this.internal.push('select');
      sock.write(encodeRequest([Buffer.from('SELECT'), Buffer.from(String(this.db))]).raw);
    }
  }

  /** The reply to the lane's own CLIENT SETNAME. */
  private onNamed(reply: Buffer): void {
    const sock = this.sock;
    if (reply[0] !== 0x2b) {
      // maxclients, protected mode, NOAUTH: the target refuses this connection.
      this.fail(reply.toString('latin1', 1, reply.length - 2));
      return;
    }
    if (this.fence === null) {
      this.ready();
      return;
    }
    this.fence.verify().then(
      () => {
        if (this.sock === sock) this.ready();
      },
      (err: Error) => {
        if (this.sock === sock) this.fail(err.message);
      },
    );
  }

  private ready(): void {
    this.state = LaneState.Ready;
    if (this.keepalive === null && this.closed === null && this.keepaliveMs > 0) {
      this.keepalive = setInterval(() => this.tick(), this.keepaliveMs);
      this.keepalive.unref();
    }
    if (this.parts.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Writes every request queued in this turn of the event loop, in one system call. */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    const sock = this.sock;
    if (sock === null || this.state !== LaneState.Ready || this.parts.length === 0) return;
    const parts = this.parts;
    const bytes = this.partsBytes;
    this.parts = [];
    this.partsBytes = 0;
    if (parts.length === 1) {
      sock.write(parts[0]!);
    } else if (bytes <= COPY_MAX) {
      // Copying small requests into one buffer costs less than a stream write per request.
      sock.write(Buffer.concat(parts, bytes));
    } else {
      sock.cork();
      for (const p of parts) sock.write(p);
      sock.uncork();
    }
  };

  private onData(chunk: Buffer): void {
    const ends = this.ends;
    ends.length = 0;
    try {
      this.scanner.scan(chunk, ends);
    } catch (e) {
      this.fail(`protocol error from target: ${(e as Error).message}`);
      return;
    }
    const stamp = nextStamp++;
    const corked = this.corked;
    let s = 0;
    for (let k = 0; k < ends.length; k++) {
      const end = ends[k]!;
      const reply = this.spanning.take(chunk, s, end);
      s = end;
      const owner = this.owners.shift();
      const e = this.entries.shift();
      if (owner === undefined) {
        this.fail('unexpected reply from target');
        break;
      }
      if (owner === null || e === null || e === undefined) {
        // The keep-alive PING's answer needs nothing; an error to it only says the server is
        // busy or loading, which the next client command will meet and report.
        const what = this.internal.shift();
        if (what === 'name') this.onNamed(reply);
        // The server refuses the db (a cluster takes only db 0): clients' SELECTs of it get its
        // own error, as on a direct connection.
        else if (what === 'select' && reply[0] === 0x2d) this.fail(`SELECT ${this.db}: ${reply.toString('latin1', 1, reply.length - 2)}`, Buffer.from(reply));
        if (this.sock === null) break; // the lane failed
        continue;
      }
      if (owner.laneStamp !== stamp && this.owners.peek() === owner) {
        // The next reply is this client's too (it pipelines): its replies in this chunk
        // leave in one write.
        owner.laneStamp = stamp;
        owner.client.cork();
        corked.push(owner.client);
      }
      owner.laneReply(e, reply);
    }
    if (s < chunk.length && this.sock !== null) this.spanning.hold(chunk.subarray(s));
    for (const c of corked) c.uncork();
    corked.length = 0;
  }

  /**
   * The connection is gone: every command in flight gets an error; the next send reconnects.
   * With `refusal` (the server refused the lane's SELECT), a client's SELECT of this db gets it.
   */
  private fail(reason: string, refusal: Buffer | null = null): void {
    // A connection closed with nothing in flight (the target's idle timeout) is no failure, nor
    // is a db the server refuses.
    if (this.owners.length > 0 && refusal === null) {
      this.counters.sharedFailures++;
      this.lastFailure = reason;
    }
    const sock = this.sock;
    this.sock = null;
    this.state = LaneState.Idle;
    this.spanning.drop();
    this.parts = [];
    this.partsBytes = 0;
    this.scanner = new ReplyScanner();
    sock?.destroy();
    this.internal.drain();
    const owners = this.owners.drain();
    const entries = this.entries.drain();
    for (let i = 0; i < owners.length; i++) {
      const o = owners[i];
      const e = entries[i];
      if (o === null || o === undefined || e === null || e === undefined) continue;
      if (refusal !== null && e.laneDb === this.db) o.laneReply(e, refusal);
      else o.laneFailed(e, reason);
    }
  }
}

/**
 * The lanes of one runtime: `count` per db, db 0's made at once, another db's when a client first
 * uses it (named rehome[-e<epoch>]-shared-db<n>.<i>); a client uses lane (id mod count) of its db.
 */
export class SharedLanes {
  /** Every lane, db 0's first. */
  readonly lanes: SharedLane[] = [];
  private readonly byDb = new Map<number, SharedLane[]>();
  private readonly base: string;
  private closed: string | null = null;

  constructor(
    private readonly count: number,
    private readonly endpoint: Endpoint,
    private readonly fence: SessionFence | null,
    private readonly counters: LaneCounters,
    private readonly keepaliveMs: number,
  ) {
    this.base = fence === null ? 'rehome-shared' : `rehome-e${fence.epoch}-shared`;
    this.ofDb(0);
  }

  pick(id: number, db: number): SharedLane {
    const lanes = this.byDb.get(db) ?? this.ofDb(db);
    return lanes[id % lanes.length]!;
  }

  private ofDb(db: number): SharedLane[] {
    const name = db === 0 ? this.base : `${this.base}-db${db}`;
    const lanes = Array.from({ length: this.count }, (_, i) => new SharedLane(this.endpoint, `${name}.${i + 1}`, this.fence, this.counters, this.keepaliveMs, db));
    this.byDb.set(db, lanes);
    this.lanes.push(...lanes);
    // A db first used after the runtime was retired: its lanes refuse as the others do.
    if (this.closed !== null) for (const l of lanes) l.close(this.closed);
    return lanes;
  }

  close(reason: string): void {
    this.closed ??= reason;
    for (const l of this.lanes) l.close(reason);
  }

  /** For /status: commands and failures since the proxy started, connects in this phase. */
  stats(): { connections: number; commands: number; failures: number; connects: number; last_failure: string | null } {
    let connects = 0;
    let last: string | null = null;
    for (const l of this.lanes) {
      connects += l.connects;
      last = l.lastFailure ?? last;
    }
    return {
      connections: this.lanes.length,
      commands: this.counters.sharedCommands,
      failures: this.counters.sharedFailures,
      connects,
      last_failure: last,
    };
  }
}
