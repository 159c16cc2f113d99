/**
 * One client connection, its own connection to the target, and its place on a shared one.
 *
 * Commands without connection state go on the shared lane (shared-lane.ts, chosen in route());
 * everything else on the client's own connection. Below, `up` is the own connection's queue; an
 * entry on the lane waits in the lane's queue instead, and its reply arrives through laneReply().
 *
 * Ordering (DESIGN.md "Per-client semantics"): every request becomes an Entry in `out`, the reply
 * order. Requests reach the target in the order they were sent: an entry whose keys must first be
 * moved (its `pre` step) waits in `waiting`, and every later entry waits behind it, while moves of
 * later entries already run. Entries sent to the target sit in `up`; each reply from the target
 * completes the oldest one. Replies are flushed from the front of `out`, so replies the proxy makes
 * itself (errors, merged results) come out in order too.
 *
 *   client ──► framer ──► dispatch ──► [waiting: pre steps] ──► target socket
 *                            │                                      │
 *                            └────────► out (reply order) ◄── up ◄──┘ reply scanner
 *
 * Steady state (every key known absent): dispatch forwards the original bytes at once, and a reply
 * for the entry at the front of `out` is written straight to the client (several in one write when
 * they are contiguous in the chunk). No promise, no copy.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { type CommandTable, ShareKind } from '../commands/table.js';
import { ErrorText, ProtocolError, RehomeError } from '../errors.js';
import type { Mover, KeyRef } from '../migration/mover.js';
import { isReserved } from '../phase/phase.js';
import { encodeBulk, encodeError } from '../resp/encode.js';
import { argBuf, argLower, argStr, encodeRequest, type FramerLimits, PING_REQUEST, type Request, RequestFramer } from '../resp/request-framer.js';
import { arrayElements, ReplyScanner } from '../resp/reply-scanner.js';
import type { ControlPool } from '../upstream/control.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { Deque } from '../util/deque.js';
import * as keyspace from './keyspace.js';
import type { ClientLimits } from '../config.js';
import { type IdleClient, trackActivity } from '../session/limits.js';
import type { LaneOwner, SharedLane, SharedLanes } from './shared-lane.js';

/** What every session shares: the command table, the mover, the upstreams. */
export interface SessionContext {
  table: CommandTable;
  mover: Mover;
  source: ControlPool;
  target: ControlPool;
  targetEndpoint: Endpoint;
  /** True when a fresh connection to the target must AUTH before running commands. */
  targetAuthRequired: boolean;
  databases: number;
  limits: FramerLimits;
  /** Most entries one client may have outstanding before the proxy stops reading from it. */
  maxPending: number;
  /** maxclients, query and output buffer limits, idle timeout (src/proxy/limits.ts). */
  clientLimits: ClientLimits;
  /** The proxy's log (a client closed by a limit). */
  log: (line: string) => void;
  onClose(s: Session): void;
  /** Requests handled, all clients (read by /metrics). */
  counters: { commands: number };
  /**
   * Shared connections to the target for commands without connection state (shared-lane.ts);
   * null: every client uses only its own connection (--shared-connections 0).
   */
  lanes: SharedLanes | null;
  /** Records a sampled command latency, in seconds. */
  observeLatency: (seconds: number) => void;
  /** Phases in use: upstream connections are named for the epoch and checked (src/phase). */
  fence: SessionFence | null;
  /**
   * Which side of this session holds rehome's phase key (the old server), so keyspace-wide
   * commands hide it; null when neither side a client reads holds it.
   */
  hideSide: 'source' | 'target' | null;
}

/** How a session fences its upstream connection when phases are in use. */
export interface SessionFence {
  epoch: number;
  /** Resolves when the phase, read after the call, is still this session's; rejects otherwise. */
  verify(): Promise<void>;
}

const enum St {
  Waiting,
  Forwarded,
  Done,
}

/** Transforms the target's reply to an entry before it goes to the client. */
export type ReplyHook = (reply: Buffer, e: Entry) => Buffer;

/** One request's place in the reply order. */
export class Entry {
  state = St.Waiting;
  reply: Buffer | null = null;
  /** Pending pre-forward step (moves, source reads); the entry waits in `waiting` until it ends. */
  pre: Promise<void> | null = null;
  hook: ReplyHook | null = null;
  /** Bytes to send instead of req.raw (rewritten requests). */
  bytes: Buffer | null = null;
  /** Reply already known: nothing is sent to the target. */
  local = false;
  /** The pre step failed with this error reply; nothing is sent (a MULTI is poisoned). */
  failed: Buffer | null = null;
  /** The target's reply is dropped (poison commands). */
  swallow = false;
  /** Queued inside MULTI. */
  inMulti = false;
  /** Some of the reply already went to the client (streamed while at the front). */
  streaming = false;
  /** Pub/sub stream: every reply while subscribed belongs to it. */
  stream = false;
  streamEnded = false;
  /** Replies of a stream waiting for the entry to reach the front. */
  pending: Buffer[] | null = null;
  /** When the request was framed, for sampled latency (0: not sampled). */
  t0 = 0;
  /** For the proxy's own requests (swallow): sees the reply. */
  onReply: ((reply: Buffer) => void) | null = null;
  /** Sent on the client's shared lane, not its own connection. */
  shared = false;
  /**
   * The proxy's own ordering barrier (Session.route): nothing after it is sent until every
   * command of this client on that connection (the shared lane or its own) has its reply.
   */
  barrier: 'shared' | 'own' | null = null;

  constructor(readonly req: Request | null) {}
}

const PUBSUB_ALLOWED = new Set([
  'subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe',
  'ping', 'quit', 'reset',
]);
const SUBSCRIBE_FAMILY = new Set([
  'subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe',
]);

/**
 * Commands refused through the proxy, with the reason given to the client. A Map, not an object:
 * a client's command name must never find Object.prototype's members (`constructor`, `__proto__`).
 */
const REFUSED = new Map<string, string>([
  ['sync', 'replication through a migrating proxy would copy half a dataset'],
  ['psync', 'replication through a migrating proxy would copy half a dataset'],
  ['replconf', 'replication through a migrating proxy would copy half a dataset'],
  ['replicaof', 'changing replication of the target under a running migration would lose writes'],
  ['slaveof', 'changing replication of the target under a running migration would lose writes'],
  ['failover', 'failing over the target under a running migration would lose writes'],
  ['shutdown', 'it would stop the target under a running migration; shut servers down directly'],
]);

/** How long a closed client's connection stays after its last reply reached the kernel. */
const CLOSE_LINGER_MS = 1_000;

/** A wrong-arity command: queued inside MULTI, it makes the target abort the EXEC. */
const POISON = Buffer.from('*1\r\n$3\r\nGET\r\n');

/**
 * Sent on a client's own connection before its WAIT (or WAITAOF) when it has written through the
 * shared lane since the last one: a PUBLISH is propagated to replicas, so the connection's
 * replication offset moves past the client's writes on the lane, and the WAIT waits for them too.
 */
const WAIT_PRELUDE = encodeRequest(['PUBLISH', '__rehome:wait', '']).raw;

/** One client connection. */
export class Session implements IdleClient, LaneOwner {
  readonly id: number;
  /** Last bytes in or replies taken (kept only with an idle timeout: see limits.ts). */
  lastActivity = Date.now();
  /** Closing, every reply written: see linger(). */
  private lingering = false;
  db = 0;
  private inMulti = false;
  private multiDb = 0;
  private subscribed = false;
  private subCount = 0;
  private shardCount = 0;
  authed: boolean;
  /**
   * Connection-state commands (SELECT, AUTH, HELLO, RESET, CLIENT SETNAME, an EXEC that ran a
   * SELECT) sent and not yet answered. rehome's view of the connection changes on the server's
   * reply (DESIGN.md rule 6), so nothing after such a command is dispatched before that reply.
   */
  private statePending = 0;
  /** A SELECT was queued in the open MULTI: the db after EXEC depends on EXEC's outcome. */
  private multiSelect = false;
  /** MONITOR mode: every reply belongs to the stream entry. */
  private monitoring = false;
  private readonly framer: RequestFramer;
  private readonly scanner = new ReplyScanner();
  private readonly out = new Deque<Entry>();
  private readonly up = new Deque<Entry>();
  private readonly waiting = new Deque<Entry>();
  /** A request whose dispatch waits (pub/sub barrier, pending AUTH). */
  private held: Request | null = null;
  private barrierToken: Buffer | null = null;
  /** Pieces of a target reply that spans chunks (not streamed). */
  private partial: Buffer[] | null = null;
  private readonly ends: number[] = [];
  /** No more requests are read; the connection closes once every reply is out. */
  private closing = false;
  /** The client half-closed: answer what it sent, then close. */
  private inputEnded = false;
  /** pump() stopped because too many replies are outstanding. */
  private fullPipeline = false;
  /** A held keyspace-wide command waits for every earlier reply. */
  private heldForIdle = false;
  /** A keyspace-wide command is running: nothing after it starts (not even moves) until it ends. */
  private exclusive = false;
  private dead = false;
  private upstreamFailed: string | null = null;
  private upstreamConnected = false;
  private clientBlocked = false;
  private upstreamBlocked = false;
  private readonly upstream: net.Socket;
  private pumping = false;
  /** Bytes for the target not yet written (see sendBytes). */
  private wParts: Buffer[] = [];
  /** The last run of queued bytes: `wLen` bytes from the start of `wLast`'s memory. */
  private wLast: Buffer | null = null;
  private wLen = 0;
  /** Phases: the upstream is not yet named and checked for the epoch; nothing is dispatched. */
  private fenceHold = false;
  /** Phases: the upstream carries this session's fenced name. */
  private named = false;
  /** Phases: the name the client gave itself (CLIENT SETNAME), shown by CLIENT GETNAME. */
  private clientName: string | null = null;
  /**
   * The client uses only its own connection from now on: it changed its connection's state
   * (PINNING), or there are no lanes, or the target needs AUTH.
   */
  private pinned: boolean;
  private readonly lane: SharedLane | null;
  /** Which connection the last request routed went to (see route()). */
  private onShared = false;
  /** Commands of this client on the lane without a reply yet. */
  private sharedInFlight = 0;
  /** The client wrote through the lane since its last WAIT (see WAIT_PRELUDE). */
  private sharedWrites = false;
  /** Resolves the armed barrier at the front of `waiting` once its connection is idle. */
  private idleWaiter: (() => void) | null = null;
  private idleFor: 'shared' | 'own' | null = null;
  /** See LaneOwner. */
  laneStamp = 0;
  /** Something was sent on the own connection since the last keepOwnAlive(). */
  private ownActive = false;

  constructor(
    readonly client: net.Socket,
    readonly ctx: SessionContext,
    id: number,
  ) {
    this.id = id;
    this.authed = !ctx.targetAuthRequired;
    this.lane = ctx.lanes === null || ctx.targetAuthRequired ? null : ctx.lanes.pick(id);
    this.pinned = this.lane === null;
    this.framer = new RequestFramer(ctx.limits);
    client.setNoDelay(true);
    const ep = ctx.targetEndpoint;
    const up = net.connect({ host: ep.host, port: ep.port });
    up.setNoDelay(true);
    this.upstream = up;
    up.on('connect', () => {
      this.upstreamConnected = true;
    });
    up.on('data', (chunk: Buffer) => this.guard(() => this.onUpstreamData(chunk)));
    up.on('error', (err) => this.onUpstreamGone(err.message));
    up.on('close', () => this.onUpstreamGone('connection closed'));
    up.on('drain', () => {
      this.upstreamBlocked = false;
      this.updateReading();
    });
    client.on('data', (chunk: Buffer) => this.guard(() => this.onClientData(chunk)));
    client.on('end', () => {
      this.inputEnded = true;
      // Redis frees a client as soon as it reads its end of stream, which ends a blocking command
      // it left behind. Kept running here, it would pop an element for a client that is gone.
      if (this.hasBlocking()) this.destroy();
      else this.pump();
    });
    client.on('error', () => this.destroy());
    client.on('close', () => this.destroy());
    client.on('drain', () => {
      this.clientBlocked = false;
      if (!this.dead) {
        this.upstream.resume();
        this.updateReading();
      }
    });
    if (ctx.clientLimits.idleTimeoutMs > 0) trackActivity(client, this);
    // Without AUTH the connection is named now; with AUTH once the client has authenticated.
    if (ctx.fence !== null && this.authed) this.startFence();
  }

  /**
   * Phases: names the upstream connection for the session's epoch, then reads the phase; only
   * if it still matches does the session go on. A later switch finds the name and kills the
   * connection (src/phase/phase.ts). Nothing is dispatched meanwhile.
   */
  private startFence(): void {
    const fence = this.ctx.fence;
    if (fence === null || this.named) return;
    this.fenceHold = true;
    this.named = true;
    this.sendInternal(this.nameRequest(), (reply) => {
      if (reply[0] !== 0x2b) {
        // Not authenticated yet (NOAUTH): nothing can run; try again after AUTH.
        this.named = false;
        this.endFenceHold();
        return;
      }
      fence.verify().then(
        () => this.endFenceHold(),
        (err: Error) => this.guard(() => this.onUpstreamGone(err.message)),
      );
    });
  }

  private endFenceHold(): void {
    if (!this.fenceHold || this.dead) return;
    this.fenceHold = false;
    if (this.held !== null && this.statePending === 0) process.nextTick(() => this.releaseHeld());
    else process.nextTick(() => this.pump());
  }

  /** CLIENT SETNAME for the fenced name, carrying the client's own name after a dot. */
  private nameRequest(clientName = this.clientName): Buffer {
    return encodeRequest([Buffer.from('CLIENT'), Buffer.from('SETNAME'), this.nameRequestName(clientName)]).raw;
  }

  private nameRequestName(clientName: string | null): Buffer {
    const base = `rehome-e${this.ctx.fence!.epoch}-client`;
    return Buffer.from(clientName === null ? base : `${base}.${clientName}`, 'latin1');
  }

  /** Sends a request of the proxy's own on the client's connection; its reply goes to `f`. */
  private sendInternal(bytes: Buffer, f: (reply: Buffer) => void): void {
    const p = new Entry(null);
    p.swallow = true;
    p.state = St.Forwarded;
    p.onReply = f;
    this.up.push(p);
    this.ownActive = true;
    this.sendBytes(bytes);
    this.flushUp();
  }

  /**
   * Called every few seconds (server.ts): a client that works on the shared lane leaves its own
   * connection idle, and a server with an idle `timeout` would close it and with it the client.
   * A PING on an own connection idle since the last call keeps it open.
   */
  keepOwnAlive(): void {
    const idle = !this.ownActive;
    this.ownActive = false;
    if (!idle || this.pinned || this.dead || this.closing || this.fenceHold || this.upstreamFailed !== null ||
        !this.upstreamConnected || this.up.length > 0 || this.waiting.length > 0) return;
    this.sendInternal(PING_REQUEST, () => undefined);
  }

  /**
   * Runs a socket event handler. An unexpected exception (a bug) closes this client's
   * connection only; every other client carries on.
   */
  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      process.stderr.write(`${new Date().toISOString()} rehome: internal error on client ${this.id}, connection closed: ${(e as Error).stack ?? String(e)}\n`);
      this.destroy();
    }
  }

  // ---------------------------------------------------------------- client side

  private onClientData(chunk: Buffer): void {
    if (this.closing || this.dead) return;
    this.framer.push(chunk);
    this.pump();
    // What is left is an unfinished request, or requests waiting their turn (the client then
    // is paused): bounded like Redis's client-query-buffer-limit.
    const limit = this.ctx.clientLimits.queryBufferLimit;
    if (this.framer.buffered > limit && !this.closing && !this.dead) {
      this.ctx.log(`client ${this.id} closed: query buffer limit (${limit} bytes) reached`);
      this.framer.discard();
      this.closeWithError(ErrorText.queryBufferLimit(limit));
    }
  }

  /** Frames and dispatches buffered requests until done or held. */
  private pump(): void {
    if (this.pumping || this.dead) return;
    this.pumping = true;
    const up = this.upstream;
    up.cork();
    try {
      for (;;) {
        if (this.closing || this.held !== null || this.fenceHold) break;
        if (this.exclusive) {
          if (this.out.length > 0) break;
          this.exclusive = false;
        }
        if (this.out.length >= this.ctx.maxPending) {
          this.fullPipeline = true;
          break;
        }
        let req: Request | null;
        try {
          req = this.framer.next();
        } catch (e) {
          if (e instanceof ProtocolError) {
            this.protocolError(e.message);
            break;
          }
          throw e;
        }
        if (req === null) {
          // Nothing more will come from a client that half-closed. While subscribed, the
          // end of the replies is known only from a barrier's answer.
          if (this.inputEnded) {
            this.closing = true;
            if (this.subscribed) this.startBarrier(null);
          }
          break;
        }
        this.dispatch(req);
      }
    } finally {
      this.pumping = false;
      this.flushUp();
      up.uncork();
    }
    if (this.closing) this.flushOut();
    this.updateReading();
  }

  private updateReading(): void {
    if (this.dead || this.lingering) return;
    const stop =
      this.closing || this.held !== null || this.upstreamBlocked || this.fenceHold ||
      this.out.length >= this.ctx.maxPending ||
      (this.clientBlocked && this.ctx.clientLimits.outputBufferLimit === 0);
    if (stop) this.client.pause();
    else this.client.resume();
  }

  private protocolError(msg: string): void {
    this.closeWithError(ErrorText.protocol(msg));
  }

  /** Answers `text` after every earlier reply, then closes; nothing more is read. */
  private closeWithError(text: string): void {
    const e = new Entry(null);
    e.local = true;
    e.reply = encodeError(text);
    this.enqueue(e);
    this.closing = true;
    this.client.pause();
    this.flushOut();
  }

  /** Routes one request. */
  private dispatch(req: Request): void {
    const name = req.name;
    this.ctx.counters.commands++;
    if (!this.pinned && pins(req, this.ctx.table)) this.pinned = true;
    if (this.upstreamFailed !== null) {
      this.localReply(req, encodeError(ErrorText.targetUnavailable(this.upstreamFailed)));
      this.closing = true;
      return;
    }
    if (this.statePending > 0) {
      // rehome's view of this connection (db, identity, name) waits for the server's answer.
      this.held = req;
      return;
    }
    if (this.monitoring) {
      if (name === 'reset') this.reset(req);
      else this.sendBytes(req.raw); // answered in the stream, as on the server
      return;
    }
    if (this.subscribed) {
      if (!PUBSUB_ALLOWED.has(name)) {
        this.startBarrier(req);
        return;
      }
      if (name !== 'reset') {
        // Its replies arrive through the stream entry.
        this.sendBytes(req.raw);
        return;
      }
    }
    const refusal = REFUSED.get(name);
    if (refusal !== undefined) {
      this.refuse(req, ErrorText.refused(name.toUpperCase(), refusal));
      return;
    }
    if (!this.authed && name !== 'auth' && name !== 'hello') {
      // The target rejects it (NOAUTH) without running it; nothing is moved for this client.
      this.forwardPlain(req);
      return;
    }
    switch (name) {
      case 'select':
        this.select(req);
        return;
      case 'multi':
        if (!this.inMulti) {
          this.inMulti = true;
          this.multiDb = this.db;
          this.multiSelect = false;
        }
        this.forwardPlain(req);
        return;
      case 'exec':
        this.exec(req);
        return;
      case 'discard':
        if (this.inMulti) {
          this.inMulti = false;
          this.db = this.multiDb;
        }
        this.forwardPlain(req);
        return;
      case 'auth':
        this.forwardAuth(req);
        return;
      case 'hello':
        this.hello(req);
        return;
      case 'reset':
        this.reset(req);
        return;
      case 'monitor':
        this.monitor(req);
        return;
      case 'quit':
        this.forwardPlain(req);
        return;
      case 'client':
        if (req.argc >= 3 && argLower(req, 1) === 'reply' && argLower(req, 2) !== 'on') {
          this.refuse(req, ErrorText.refused('CLIENT REPLY', 'the proxy matches every request to its reply'));
          return;
        }
        if (this.ctx.fence !== null && this.named && this.clientNameCommand(req)) return;
        this.forwardPlain(req);
        return;
      case 'keys':
      case 'scan':
      case 'dbsize':
      case 'randomkey':
      case 'info':
      case 'flushdb':
      case 'flushall':
      case 'swapdb':
        if (this.inMulti) {
          // Once nothing moves any more (hold, drained) they run inside MULTI as on the server;
          // so does INFO without its keyspace section, which reads nothing of the keyspace.
          if (this.ctx.mover.drained) keyspace.queuedInMulti(this, req);
          else if (name === 'info' && !keyspace.wantsKeyspace(req)) this.forwardPlain(req);
          else this.refuse(req, ErrorText.notInMulti(name.toUpperCase()));
          return;
        }
        // These read or reshape whole dbs on both servers. They must see every earlier command
        // of this client done, and no later command may move a key before they are done
        // (a move in between would be counted twice, or read a db before it was swapped).
        if (this.out.length > 0) {
          this.held = req;
          this.heldForIdle = true;
          return;
        }
        this.exclusive = true;
        keyspace.handle(this, req);
        return;
      case 'move':
        this.gateMove(req);
        return;
      case 'copy':
        this.gateCopy(req);
        return;
      case 'sort':
      case 'sort_ro':
        if (!this.ctx.mover.drained && sortUsesPatterns(req)) {
          this.refuse(req, ErrorText.sortPattern());
          return;
        }
        break;
      default:
        if (SUBSCRIBE_FAMILY.has(name)) {
          this.subscribe(req);
          return;
        }
    }
    this.keyed(req);
  }

  /**
   * Phases: the connection's name belongs to rehome's fencing, so CLIENT SETNAME keeps the fenced
   * prefix (`rehome-e<epoch>-client.<name>`) and CLIENT GETNAME answers the client's own name.
   * Returns false for other CLIENT subcommands.
   */
  private clientNameCommand(req: Request): boolean {
    const sub = argLower(req, 1);
    if (sub === 'getname' && req.argc === 2) {
      this.localReply(req, this.clientName === null ? Buffer.from('$-1\r\n') : encodeBulk(Buffer.from(this.clientName, 'latin1')));
      return true;
    }
    if (sub !== 'setname' || req.argc !== 3) return false;
    const name = argStr(req, 2);
    const e = new Entry(req);
    if (validClientName(name)) {
      const given = name === '' ? null : name;
      e.bytes = this.nameRequest(given);
      this.changesState(e, (ok) => {
        if (ok) this.clientName = given;
      });
    }
    // An invalid name goes as it is: the server's own error, and the fenced name stays.
    this.enqueue(e);
    return true;
  }

  /** The general case: move the command's keys (if not known absent), then forward it. */
  private keyed(req: Request): void {
    const keys = this.ctx.table.keys(req);
    if (keys !== null && keys.some(isReserved)) {
      this.refuse(req, ErrorText.reservedKey());
      return;
    }
    if (keys === null) {
      const e = new Entry(req);
      const db = this.db; // the db the command runs in, whatever SELECTs follow it
      e.pre = this.getKeys(req).then((ks) => {
        // Keys only the server could name (SORT ... STORE, modules) are refused like any other.
        if (ks.some(isReserved)) throw new RehomeError('ERESERVED', ErrorText.reservedKey());
        return (ks.length > 0 ? this.ctx.mover.gate(db, ks) : null) ?? undefined;
      });
      this.enqueue(e);
      return;
    }
    if (keys.length === 0) {
      this.forwardPlain(req);
      return;
    }
    const p = this.ctx.mover.gate(this.db, keys);
    if (p === null) {
      this.forwardPlain(req);
      return;
    }
    const e = new Entry(req);
    e.pre = p;
    this.enqueue(e);
  }

  /** Asks the target which keys a command touches (COMMAND GETKEYS). */
  private async getKeys(req: Request): Promise<string[]> {
    const args: Buffer[] = [];
    for (let i = 0; i < req.argc; i++) args.push(req.raw.subarray(req.offs[2 * i]!, req.offs[2 * i + 1]!));
    try {
      const r = (await this.ctx.target.db(0).callBuffer('COMMAND', 'GETKEYS', ...args)) as Buffer[];
      return r.map((b) => b.toString('latin1'));
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      // "Invalid arguments" means the server found no key in them: nothing to move.
      if (/no key arguments|Invalid arguments specified|Invalid number of arguments/i.test(msg)) return [];
      if (/Invalid command specified/i.test(msg)) return [];
      // GETKEYS needs at least one argument after the name: a bare command names no key.
      if (req.argc < 2 && /wrong number of arguments for 'command\|getkeys'/i.test(msg)) return [];
      throw new RehomeError('EGETKEYS', ErrorText.getkeysFailed(req.name.toUpperCase(), msg));
    }
  }

  private gateMove(req: Request): void {
    const keys = this.ctx.table.keys(req);
    if (keys === null || keys.length === 0) {
      this.keyed(req);
      return;
    }
    const refs: KeyRef[] = [{ db: this.db, key: keys[0]! }];
    const n = req.argc === 3 ? parseDbIndex(argStr(req, 2), this.ctx.databases) : null;
    // MOVE fails if the key exists in the destination db: that key must be moved first too.
    if (n !== null && n !== this.db) refs.push({ db: n, key: keys[0]! });
    this.gateRefs(req, refs);
  }

  private gateCopy(req: Request): void {
    const keys = this.ctx.table.keys(req);
    if (keys === null || keys.length < 2) {
      this.keyed(req);
      return;
    }
    let dstDb = this.db;
    for (let i = 3; i < req.argc - 1; i++) {
      if (argLower(req, i) === 'db') {
        const n = parseDbIndex(argStr(req, i + 1), this.ctx.databases);
        if (n !== null) dstDb = n;
      }
    }
    this.gateRefs(req, [
      { db: this.db, key: keys[0]! },
      { db: dstDb, key: keys[1]! },
    ]);
  }

  private gateRefs(req: Request, refs: KeyRef[]): void {
    if (refs.some((r) => isReserved(r.key))) {
      this.refuse(req, ErrorText.reservedKey());
      return;
    }
    const p = this.ctx.mover.gateRefs(refs);
    if (p === null) {
      this.forwardPlain(req);
      return;
    }
    const e = new Entry(req);
    e.pre = p;
    this.enqueue(e);
  }

  /**
   * Makes `e` a connection-state command (DESIGN.md rule 6): nothing after it is dispatched until
   * the server answers, and `apply` sees whether the server accepted it (a `+` or array reply).
   */
  private changesState(e: Entry, apply: (ok: boolean, reply: Buffer) => void): void {
    this.statePending++;
    const prior = e.hook;
    e.hook = (reply, en) => {
      this.statePending--;
      const out = prior === null ? reply : prior(reply, en);
      apply(reply[0] === 0x2b || reply[0] === 0x2a || reply[0] === 0x25, reply);
      this.releaseAfterState();
      return out;
    };
  }

  private releaseAfterState(): void {
    if (this.statePending > 0 || this.held === null || this.subscribed || this.fenceHold) return;
    // Resume on the next tick: this runs inside reply processing.
    process.nextTick(() => this.releaseHeld());
  }

  /**
   * SELECT changes the db keys are moved in only once the server has run it. Inside MULTI its
   * +QUEUED says nothing about the outcome: the db is predicted with the server's own integer
   * rules and settled by EXEC's reply (exec()).
   */
  private select(req: Request): void {
    const n = req.argc === 2 ? parseDbIndex(argStr(req, 1), this.ctx.databases) : null;
    if (this.inMulti) this.multiSelect = true;
    const e = new Entry(req);
    this.changesState(e, (ok) => {
      if (ok && n !== null) this.db = n;
    });
    this.enqueue(e);
  }

  private exec(req: Request): void {
    const wasIn = this.inMulti;
    const savedDb = this.multiDb;
    this.inMulti = false;
    const e = new Entry(req);
    if (wasIn && this.multiSelect) {
      this.multiSelect = false;
      // EXEC aborted (EXECABORT, WATCH): the queued SELECTs did not run.
      this.changesState(e, (_ok, reply) => {
        if (reply[0] !== 0x2a || reply[1] === 0x2d) this.db = savedDb;
      });
    }
    this.enqueue(e);
  }

  private forwardAuth(req: Request): void {
    const e = new Entry(req);
    this.changesState(e, (ok) => {
      if (ok && !this.authed) {
        this.authed = true;
        if (this.ctx.fence !== null) this.startFence();
      }
    });
    this.enqueue(e);
  }

  private hello(req: Request): void {
    // rehome speaks RESP2 to its clients; every other version, valid or not, gets the server's
    // own answer.
    if (req.argc >= 2 && argStr(req, 1) === '3') {
      this.localReply(req, encodeError(ErrorText.noproto()));
      return;
    }
    let hasAuth = false;
    let setname = -1;
    for (let i = 2; i < req.argc; i++) {
      const a = argLower(req, i);
      if (a === 'auth') hasAuth = true;
      else if (a === 'setname' && i + 1 < req.argc) setname = i + 1;
    }
    const e = new Entry(req);
    let given: string | null | undefined;
    if (setname > 0 && this.ctx.fence !== null && validClientName(argStr(req, setname))) {
      // Keep the fenced prefix on the connection's name (see clientNameCommand); an unnamed
      // connection gets it with the fence that follows AUTH.
      const name = argStr(req, setname);
      given = name === '' ? null : name;
      if (this.named) {
        const args: Buffer[] = [];
        for (let i = 0; i < req.argc; i++) args.push(i === setname ? this.nameRequestName(given) : argBuf(req, i));
        e.bytes = encodeRequest(args).raw;
      }
    }
    this.changesState(e, (ok) => {
      if (!ok) return;
      if (given !== undefined) this.clientName = given;
      if (hasAuth && !this.authed) {
        this.authed = true;
        if (this.ctx.fence !== null) this.startFence();
      }
    });
    this.enqueue(e);
  }

  /**
   * RESET: rehome's view of the connection is reset once the server has run it, and only then is
   * the connection named for the fence again (RESET clears the name; a name set before it ran
   * would be cleared with it, and the phase switch's CLIENT KILL would miss the connection).
   */
  private reset(req: Request): void {
    this.statePending++;
    if (this.subscribed || this.monitoring) {
      // The stream ends when the target answers +RESET (onStreamReply calls afterReset).
      this.sendBytes(req.raw);
      return;
    }
    const e = new Entry(req);
    e.hook = (reply) => {
      this.statePending--;
      if (reply[0] === 0x2b) this.afterReset();
      this.releaseAfterState();
      return reply;
    };
    this.enqueue(e);
  }

  private afterReset(): void {
    this.db = 0;
    this.inMulti = false;
    this.multiSelect = false;
    this.subscribed = false;
    this.monitoring = false;
    this.authed = !this.ctx.targetAuthRequired;
    if (this.ctx.fence !== null) {
      this.named = false;
      this.clientName = null;
      if (this.authed) this.startFence();
    }
  }

  /** MONITOR: the client's own connection streams what the target runs (a pub/sub-like stream). */
  private monitor(req: Request): void {
    if (this.inMulti) {
      this.forwardPlain(req);
      return;
    }
    this.monitoring = true;
    const e = new Entry(req);
    e.stream = true;
    this.enqueue(e);
  }

  /** Whether a command that blocks on the server is outstanding (sent, or waiting to be). */
  private hasBlocking(): boolean {
    return this.out.some((e) => e.req !== null && !e.inMulti && this.blocks(e.req));
  }

  private blocks(req: Request): boolean {
    const name = req.name;
    if (name === 'wait' || name === 'waitaof') return true;
    if (name === 'xread' || name === 'xreadgroup') {
      for (let i = 1; i < req.argc; i++) if (argLower(req, i) === 'block') return true;
      return false;
    }
    return this.ctx.table.lookup(req)?.flags.has('blocking') === true;
  }

  /**
   * Sends a request of rehome's own on the client's connection, for a command running alone
   * (keyspace.ts: nothing of the client's is in flight), and resolves with the target's reply:
   * what the target answers this client's ACL user (DESIGN.md rule 5).
   */
  ownCall(bytes: Buffer): Promise<Buffer> {
    return new Promise((resolve) => {
      if (this.upstreamFailed !== null || this.dead) {
        resolve(encodeError(ErrorText.targetUnavailable(this.upstreamFailed ?? 'connection closed')));
        return;
      }
      this.sendInternal(bytes, resolve);
    });
  }

  private releaseHeld(): void {
    const req = this.held;
    if (req === null || this.dead || this.fenceHold) return;
    this.held = null;
    this.upstream.cork();
    this.dispatch(req);
    this.flushUp();
    this.upstream.uncork();
    this.pump();
  }

  private subscribe(req: Request): void {
    if (this.inMulti) {
      this.forwardPlain(req);
      return;
    }
    if (this.subscribed) {
      this.sendBytes(req.raw);
      return;
    }
    if (req.name.endsWith('subscribe') && !req.name.includes('un') && req.argc < 2) {
      this.forwardPlain(req); // arity error from the target
      return;
    }
    this.subscribed = true;
    this.subCount = 0;
    this.shardCount = 0;
    const e = new Entry(req);
    e.stream = true;
    this.enqueue(e);
  }

  /**
   * A command that is not allowed while subscribed. Whether the client is still subscribed is
   * known only once the target has answered everything before it, so send a PING with a unique
   * token and decide when its reply comes back through the stream.
   */
  private startBarrier(req: Request | null): void {
    this.held = req;
    const token = randomBytes(12).toString('hex');
    this.barrierToken = Buffer.from(token);
    this.sendBytes(Buffer.from(`*2\r\n$4\r\nPING\r\n$${token.length}\r\n${token}\r\n`));
    this.flushUp();
  }

  private refuse(req: Request, text: string): void {
    const e = new Entry(req);
    e.failed = encodeError(text);
    e.inMulti = this.inMulti;
    this.enqueue(e);
  }

  localReply(req: Request | null, reply: Buffer): void {
    const e = new Entry(req);
    e.local = true;
    e.reply = reply;
    this.enqueue(e);
  }

  /** Forwards a request as it is, in order. */
  forwardPlain(req: Request): void {
    this.enqueue(new Entry(req));
  }

  /** Adds an entry in reply order; sends it now if nothing waits before it. */
  enqueue(e: Entry): void {
    e.inMulti = e.inMulti || this.inMulti;
    if (this.lane !== null && !e.local && e.failed === null) this.route(e);
    if ((this.ctx.counters.commands & 15) === 0) e.t0 = performance.now();
    this.out.push(e);
    if (e.pre === null && this.waiting.length === 0) {
      this.send(e);
      return;
    }
    this.waiting.push(e);
    if (e.pre !== null) {
      e.pre.then(
        () => {
          e.pre = null;
          this.drainWaiting();
        },
        (err: unknown) => {
          e.pre = null;
          e.failed = encodeError(
            err instanceof RehomeError ? err.message : `ERR rehome: ${err instanceof Error ? err.message : String(err)}`,
          );
          this.drainWaiting();
        },
      );
    }
  }

  /**
   * Chooses the connection for a request: the shared lane for shareable commands (ShareKind) of
   * a client that is not pinned, its own connection otherwise. Order across the two is kept by a
   * barrier in `waiting` at each change: nothing after it is sent until every earlier command
   * on the other connection has its reply. A WAIT after writes on the lane gets WAIT_PRELUDE.
   */
  private route(e: Entry): void {
    let kind = ShareKind.No;
    if (!this.pinned && e.req !== null && e.hook === null && e.bytes === null && !e.inMulti) {
      kind = this.ctx.table.shareKind(e.req);
    }
    const shared = kind !== ShareKind.No;
    if (shared !== this.onShared) {
      this.onShared = shared;
      const b = new Entry(null);
      b.barrier = shared ? 'own' : 'shared';
      b.swallow = true;
      this.addInternal(b);
    }
    if (shared) {
      e.shared = true;
      if (kind === ShareKind.Write) this.sharedWrites = true;
    } else if (this.sharedWrites && e.req !== null && (e.req.name === 'wait' || e.req.name === 'waitaof')) {
      this.sharedWrites = false;
      const p = new Entry(null);
      p.swallow = true;
      p.bytes = WAIT_PRELUDE;
      this.addInternal(p);
    }
  }

  /** Queues one of the proxy's own entries (not in the reply order) in sending order. */
  private addInternal(b: Entry): void {
    if (this.waiting.length === 0) {
      if (b.barrier === null || !this.busyOn(b.barrier)) {
        this.send(b);
        return;
      }
      this.waiting.push(b);
      this.armBarrier(b);
      return;
    }
    // Behind other waiting entries, a barrier is armed when it reaches the front (drainWaiting).
    this.waiting.push(b);
  }

  private busyOn(which: 'shared' | 'own'): boolean {
    return which === 'shared' ? this.sharedInFlight > 0 : this.up.length > 0;
  }

  private armBarrier(b: Entry): void {
    this.idleFor = b.barrier;
    b.pre = new Promise<void>((resolve) => {
      this.idleWaiter = resolve;
    });
    b.pre.then(() => {
      b.pre = null;
      this.drainWaiting();
    }, () => undefined);
  }

  /** Releases the armed barrier once its connection has nothing in flight. */
  private checkIdle(): void {
    const f = this.idleWaiter;
    if (f === null || this.busyOn(this.idleFor!)) return;
    this.idleWaiter = null;
    this.idleFor = null;
    f();
  }

  /** LaneOwner: the target's reply to a command sent on the shared lane. */
  laneReply(e: Entry, reply: Buffer): void {
    this.sharedDone();
    if (this.dead) return;
    if (this.out.peek() === e) {
      this.out.shift();
      e.state = St.Done;
      this.write(reply);
      if (e.t0 !== 0) this.ctx.observeLatency((performance.now() - e.t0) / 1000);
      this.flushOut();
    } else {
      this.complete(e, reply);
    }
  }

  /** LaneOwner: the lane failed with this command in flight; whether it ran is unknown. */
  laneFailed(e: Entry, reason: string): void {
    this.sharedDone();
    if (this.dead) return;
    this.complete(e, encodeError(ErrorText.targetUnavailable(reason)));
  }

  private sharedDone(): void {
    if (--this.sharedInFlight === 0 && this.idleFor === 'shared') this.checkIdle();
  }

  private drainWaiting(): void {
    if (this.dead) return;
    this.upstream.cork();
    while (this.waiting.length > 0 && this.waiting.peek()!.pre === null) {
      const e = this.waiting.peek()!;
      if (e.barrier !== null && this.busyOn(e.barrier)) {
        this.armBarrier(e);
        break;
      }
      this.send(this.waiting.shift()!);
    }
    this.flushUp();
    this.upstream.uncork();
    this.flushOut();
    if (this.waiting.length === 0) this.pump();
  }

  private send(e: Entry): void {
    if (e.barrier !== null) return; // nothing to send: the barrier has passed
    if (e.failed !== null) {
      if (e.inMulti) {
        const p = new Entry(null);
        p.swallow = true;
        p.state = St.Forwarded;
        this.up.push(p);
        this.sendBytes(POISON);
      }
      e.reply = e.failed;
      e.state = St.Done;
      this.flushOut();
      return;
    }
    if (e.local) {
      e.state = St.Done;
      this.flushOut();
      return;
    }
    if (this.upstreamFailed !== null) {
      e.reply = encodeError(ErrorText.targetUnavailable(this.upstreamFailed));
      e.state = St.Done;
      this.flushOut();
      return;
    }
    e.state = St.Forwarded;
    if (e.shared) {
      this.sharedInFlight++;
      this.lane!.send(this, e, e.req!.raw);
      return;
    }
    this.up.push(e);
    this.ownActive = true;
    this.sendBytes(e.bytes ?? e.req!.raw);
  }

  /**
   * Queues bytes for the target. Requests framed from one client chunk lie next to each other in
   * that chunk, so consecutive ones are merged into one view and written with a single call.
   */
  private sendBytes(b: Buffer): void {
    const last = this.wLast;
    if (last !== null && last.buffer === b.buffer && last.byteOffset + this.wLen === b.byteOffset) {
      this.wLen += b.length; // the view is made once, in lastRun()
      return;
    }
    if (last !== null) this.wParts.push(this.lastRun(last));
    this.wLast = b;
    this.wLen = b.length;
  }

  private lastRun(last: Buffer): Buffer {
    return this.wLen === last.length ? last : Buffer.from(last.buffer, last.byteOffset, this.wLen);
  }

  /** Writes what sendBytes() queued. */
  private flushUp(): void {
    const last = this.wLast;
    if (last === null || this.dead) return;
    this.wLast = null;
    let ok = true;
    if (this.wParts.length > 0) {
      for (const p of this.wParts) ok = this.upstream.write(p) && ok;
      this.wParts = [];
    }
    ok = this.upstream.write(this.lastRun(last)) && ok;
    if (!ok) this.upstreamBlocked = true;
  }

  // ---------------------------------------------------------------- target side

  private onUpstreamData(chunk: Buffer): void {
    if (this.dead) return;
    const ends = this.ends;
    ends.length = 0;
    try {
      this.scanner.scan(chunk, ends);
    } catch (e) {
      this.onUpstreamGone(`protocol error from target: ${(e as Error).message}`);
      return;
    }
    const client = this.client;
    client.cork();
    let s = 0;
    let run = -1; // start of a run of replies written straight through
    for (let k = 0; k < ends.length; k++) {
      const end = ends[k]!;
      const entry = this.up.peek();
      if (entry === undefined) {
        // A reply nobody asked for. An error is the target refusing this connection (its
        // maxclients, protected mode): reported like a failed connect, with the target's words,
        // to the client's next command. Anything else: out of step; give up on the connection.
        client.uncork();
        if (chunk[s] === 0x2d) this.upstreamConnected = false;
        this.onUpstreamGone(chunk[s] === 0x2d ? chunk.toString('latin1', s + 1, end - 2) : 'unexpected reply from target');
        return;
      }
      if (entry.stream) {
        if (run >= 0) {
          this.write(chunk.subarray(run, s));
          run = -1;
        }
        this.onStreamReply(entry, this.takeReply(chunk, s, end));
        s = end;
        continue;
      }
      this.up.shift();
      if (entry.hook === null && !entry.swallow && this.out.peek() === entry && (this.partial === null || entry.streaming)) {
        if (run < 0) run = s;
        this.partial = null;
        this.out.shift();
        entry.state = St.Done;
        if (entry.t0 !== 0) this.ctx.observeLatency((performance.now() - entry.t0) / 1000);
        const next = this.out.peek();
        if (next !== undefined && next.state === St.Done) {
          this.write(chunk.subarray(run, end));
          run = -1;
          this.flushOut();
        }
      } else {
        if (run >= 0) {
          this.write(chunk.subarray(run, s));
          run = -1;
        }
        this.complete(entry, this.takeReply(chunk, s, end));
      }
      s = end;
    }
    if (run >= 0) this.write(chunk.subarray(run, s));
    if (s < chunk.length) {
      // The start (or middle) of a reply that continues in the next chunk.
      const piece = chunk.subarray(s);
      const head = this.up.peek();
      if (head !== undefined && !head.stream && head.hook === null && !head.swallow &&
          this.out.peek() === head && (this.partial === null || head.streaming)) {
        head.streaming = true;
        this.write(piece);
      } else {
        (this.partial ??= []).push(piece);
      }
    }
    client.uncork();
    if (this.idleFor === 'own' && this.up.length === 0) this.checkIdle();
    if (this.out.length === 0 && (this.closing || this.fullPipeline || this.heldForIdle || this.exclusive)) {
      this.flushOut();
    }
  }

  private takeReply(chunk: Buffer, s: number, end: number): Buffer {
    const piece = chunk.subarray(s, end);
    const partial = this.partial;
    if (partial === null) return piece;
    this.partial = null;
    partial.push(piece);
    return Buffer.concat(partial);
  }

  private write(buf: Buffer): void {
    if (this.dead) return;
    if (this.client.write(buf)) return;
    const limit = this.ctx.clientLimits.outputBufferLimit;
    if (limit > 0) {
      // The client reads slower than replies come: hold them, up to the limit (as Redis's
      // client-output-buffer-limit does), rather than leave them piling up in the target.
      if (this.heldReplyBytes() > limit) this.outputLimitExceeded(limit);
    } else if (!this.clientBlocked) {
      // No limit: stop reading the target, and the client, until the client catches up.
      this.clientBlocked = true;
      this.upstream.pause();
    }
  }

  /**
   * Reply bytes held for the client: what its socket has not sent yet and a reply being
   * assembled. Finished replies waiting in `out` behind an earlier one are not counted: there
   * are at most --max-pending-per-client of them, each one of the proxy's own short replies.
   */
  private heldReplyBytes(): number {
    let n = this.client.writableLength;
    if (this.partial !== null) for (const p of this.partial) n += p.length;
    return n;
  }

  private outputLimitExceeded(limit: number): void {
    this.ctx.log(`client ${this.id} closed: output buffer limit (${limit} bytes) reached, it does not read its replies`);
    this.destroy();
  }

  private complete(e: Entry, reply: Buffer): void {
    if (e.swallow) {
      e.onReply?.(reply);
      return;
    }
    let out = reply;
    if (e.hook !== null) {
      try {
        out = e.hook(reply, e);
      } catch (err) {
        out = encodeError(`ERR rehome: ${(err as Error).message}`);
      }
    }
    e.reply = out;
    e.state = St.Done;
    this.flushOut();
  }

  /** Writes finished replies from the front of the reply order. */
  private flushOut(): void {
    const out = this.out;
    for (;;) {
      const e = out.peek();
      if (e === undefined) break;
      if (e.stream) {
        if (e.pending !== null) {
          for (const b of e.pending) this.write(b);
          e.pending = null;
        }
        if (!e.streamEnded) break;
        out.shift();
        continue;
      }
      if (e.state !== St.Done) break;
      out.shift();
      if (e.reply !== null) this.write(e.reply);
      if (e.t0 !== 0) this.ctx.observeLatency((performance.now() - e.t0) / 1000);
    }
    if (out.length === 0 && !this.dead) {
      if (this.heldForIdle) {
        this.heldForIdle = false;
        process.nextTick(() => this.releaseHeld());
      } else if (this.exclusive) {
        this.exclusive = false;
        process.nextTick(() => this.pump());
      }
    }
    if (this.closing && out.length === 0 && !this.dead) {
      this.client.end();
      this.upstream.destroy();
      this.linger();
    } else if (this.fullPipeline && out.length < this.ctx.maxPending / 2) {
      // Room again: frame what was already received (pump() resumes reading too).
      this.fullPipeline = false;
      setImmediate(() => this.pump());
    }
  }

  private onStreamReply(e: Entry, reply: Buffer): void {
    const token = this.barrierToken;
    if (token !== null && isBarrierReply(reply, token)) {
      this.barrierToken = null;
      this.onBarrier(e);
      return;
    }
    if (reply.length === 8 && reply.toString('latin1') === '+RESET\r\n') {
      this.emit(e, reply);
      this.statePending--;
      this.afterReset();
      this.endStream(e);
      if (this.held !== null) this.releaseAfterState();
      else process.nextTick(() => this.pump());
      return;
    }
    if (this.monitoring) {
      // MONITOR refused (its ACL user may not run it): the connection is a normal one again.
      if (reply[0] === 0x2d && e.pending === null && !e.streaming) {
        this.monitoring = false;
        this.emit(e, reply);
        this.endStream(e);
        process.nextTick(() => this.pump());
        return;
      }
      e.streaming = true;
      this.emit(e, reply);
      return;
    }
    if (reply[0] === 0x2a) this.trackSubscriptions(reply);
    this.emit(e, reply);
  }

  private trackSubscriptions(reply: Buffer): void {
    const els = arrayElements(reply);
    if (els === null || els.length !== 3) return;
    const kindEl = els[0]!;
    const countEl = els[2]!;
    if (kindEl[0] !== 0x24 || countEl[0] !== 0x3a) return;
    const nl = kindEl.indexOf(10);
    const kind = kindEl.toString('latin1', nl + 1, kindEl.length - 2);
    const count = Number(countEl.toString('latin1', 1, countEl.length - 2));
    if (kind === 'subscribe' || kind === 'psubscribe' || kind === 'unsubscribe' || kind === 'punsubscribe') {
      this.subCount = count;
    } else if (kind === 'ssubscribe' || kind === 'sunsubscribe') {
      this.shardCount = count;
    }
  }

  private onBarrier(e: Entry): void {
    const req = this.held;
    if (req === null) {
      // The closing barrier: every reply the client asked for is out.
      this.subscribed = false;
      this.endStream(e);
      return;
    }
    if (this.subCount + this.shardCount === 0) {
      // Back in normal mode: the held command runs as usual.
      this.subscribed = false;
      this.endStream(e);
      process.nextTick(() => this.releaseHeld());
      return;
    }
    this.held = null;
    if (req !== null) this.emit(e, encodeError(ErrorText.pubsubContext(req.name)));
    process.nextTick(() => this.pump());
  }

  private emit(e: Entry, buf: Buffer): void {
    if (this.out.peek() === e) this.write(buf);
    else (e.pending ??= []).push(buf);
  }

  private endStream(e: Entry): void {
    e.streamEnded = true;
    e.state = St.Done;
    if (this.up.peek() === e) this.up.shift();
    this.flushOut();
  }

  /** The target connection is gone: fail what waits on it, then close the client. */
  private onUpstreamGone(reason: string): void {
    if (this.dead || this.upstreamFailed !== null) return;
    const why = this.upstreamConnected ? reason : `cannot connect to ${describeEndpoint(this.ctx.targetEndpoint)}: ${reason}`;
    this.upstreamFailed = why;
    this.upstream.destroy();
    const err = encodeError(ErrorText.targetUnavailable(why));
    for (const e of this.up.drain()) {
      if (e.swallow) {
        e.onReply?.(err);
        continue;
      }
      if (e.stream) {
        e.streamEnded = true;
        continue;
      }
      e.reply = err;
      e.state = St.Done;
    }
    this.partial = null;
    this.subscribed = false;
    this.monitoring = false;
    this.idleWaiter = null;
    this.idleFor = null;
    // Requests still waiting on moves fail too: their connection state is gone.
    for (const e of this.waiting.drain()) {
      e.pre = null;
      e.reply = err;
      e.state = St.Done;
    }
    if (this.held !== null) {
      this.localReply(this.held, err);
      this.held = null;
    }
    // A connection that was up and went away closes the client too, as a direct connection
    // would. One that never came up stays open so the client's next command gets the reason.
    if (this.out.length > 0 || this.upstreamConnected) this.closing = true;
    // Paused before flushOut(): once every reply is out, linger() reads again.
    if (this.closing && !this.lingering) this.client.pause();
    this.flushOut();
  }

  /**
   * The phase this session belongs to is over: what is in flight gets an error, as on a dropped
   * connection, and the client is closed (it reconnects under the new phase).
   */
  fail(reason: string): void {
    this.guard(() => this.onUpstreamGone(reason));
    // A session that is closing ends the client's socket once its replies are written; one with
    // nothing in flight and no upstream yet has nothing to say.
    if (!this.dead && !this.closing) this.destroy();
  }

  /** Graceful stop: finish what was received, then close. */
  shutdown(): void {
    if (this.dead) return;
    this.closing = true;
    if (!this.lingering) this.client.pause();
    this.flushOut();
  }

  /**
   * Every reply is out and the client's side is ended. A paused socket would never see its peer
   * close, so keep reading (input is dropped while closing), and let the connection go shortly
   * after the last reply has reached the kernel, whether or not the peer closes.
   */
  private linger(): void {
    if (this.lingering) return;
    this.lingering = true;
    this.client.resume();
    this.client.once('finish', () => setTimeout(() => this.destroy(), CLOSE_LINGER_MS).unref());
  }

  /** Waiting on a reply (a blocking command too), subscribed, or holding a request: not idle. */
  get busy(): boolean {
    return this.out.length > 0 || this.up.length > 0 || this.held !== null || this.subscribed;
  }

  /** Closes an idle client without a reply, as Redis does. */
  closeIdle(): void {
    this.destroy();
  }

  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    this.client.destroy();
    this.upstream.destroy();
    this.ctx.onClose(this);
  }
}

function isBarrierReply(reply: Buffer, token: Buffer): boolean {
  const t = token.toString('latin1');
  const s = reply.toString('latin1');
  return s === `*2\r\n$4\r\npong\r\n$${t.length}\r\n${t}\r\n` || s === `$${t.length}\r\n${t}\r\n`;
}

/**
 * Commands after which a client's own connection carries state that its later commands depend
 * on: the db, a transaction or WATCH, authentication and protocol, pub/sub, client-side caching,
 * reply mode. Such a client is pinned to its own connection for good.
 */
const PINNING = new Set([
  'select', 'auth', 'hello', 'reset', 'multi', 'watch', 'subscribe', 'psubscribe', 'ssubscribe',
  'readonly', 'readwrite', 'asking', 'monitor',
]);
const PINNING_CLIENT = new Set(['tracking', 'caching', 'reply', 'no-evict', 'no-touch']);

/** Whether a request pins its client to its own connection (PINNING; unknown commands too). */
function pins(req: Request, table: CommandTable): boolean {
  const name = req.name;
  if (PINNING.has(name)) return true;
  if (name === 'client') return req.argc >= 2 && PINNING_CLIENT.has(argLower(req, 1));
  // A module's command rehome knows nothing about may keep connection state.
  return !table.has(name);
}

/** What Redis accepts as a client name: no spaces, newlines or other special characters. */
function validClientName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 33 || c > 126) return false;
  }
  return true;
}

/**
 * A db index the target accepts, or null. Redis's integer rules: no sign but '-', no leading
 * zero, no spaces ("01" and "+1" are not integers to it).
 */
export function parseDbIndex(s: string, databases: number): number | null {
  if (!/^(0|[1-9]\d{0,8})$/.test(s)) return null;
  const n = Number(s);
  return n < databases ? n : null;
}

/**
 * SORT reads keys named by BY/GET patterns, which cannot be moved before it runs. A pattern
 * without '*' names no key (the server looks nothing up: BY skips sorting, GET answers nil), and
 * GET # is the element itself.
 */
function sortUsesPatterns(req: Request): boolean {
  let j = 2;
  while (j < req.argc) {
    const opt = argLower(req, j);
    if (opt === 'asc' || opt === 'desc' || opt === 'alpha') j++;
    else if (opt === 'limit') j += 3;
    else if (opt === 'store') j += 2;
    else if (opt === 'by' || opt === 'get') {
      if (j + 1 < req.argc && argBuf(req, j + 1).includes(0x2a)) return true;
      j += 2;
    } else return false;
  }
  return false;
}
