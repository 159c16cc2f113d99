/**
 * One connection to the cluster front (front.ts): it looks like one standalone server to rehome's
 * sessions, shared lanes and control connections, and routes each request to the master owning
 * its keys' slot, over connections of its own to each node it needs (opened lazily, with the
 * client's AUTH/HELLO/CLIENT SETNAME replayed first). Replies go back in request order whatever
 * node answers first: each request has its place in `out`, flushed from the front.
 *
 *   request ──► keys ──► one slot ─────────────► node link ──► MOVED? refresh map, send again
 *                  │                                          ASK?   ASKING + send to that node
 *                  ├──► several slots: MGET/MSET/DEL/UNLINK/EXISTS/TOUCH split (split.ts),
 *                  │    anything else CROSSSLOT, as the cluster answers it
 *                  ├──► no keys: the first master (PING, INFO, CLIENT ...)
 *                  └──► SCAN/KEYS/DBSIZE/RANDOMKEY/FLUSH*: every master (keyspace.ts)
 *
 * MULTI...EXEC is kept here until EXEC and sent whole to the node of its keys' one slot (a key
 * of another slot: CROSSSLOT at once and EXECABORT at EXEC); WATCH fixes that slot first.
 * SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and MONITOR start a stream (front-stream.ts) until the
 * connection is back in normal mode.
 */
import type net from 'node:net';
import type { CommandTable } from '../commands/table.js';
import { ErrorText, ProtocolError } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import { argLower, argStr, type FramerLimits, type Request, RequestFramer } from '../resp/request-framer.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { Deque } from '../util/deque.js';
import { allMasters, isInfoWithKeyspace, KEYSPACE_WIDE } from './keyspace.js';
import { type LinkHost, NodeLink } from './node-link.js';
import { commonSlot } from './slot.js';
import { type StateHost, SharedState } from './front-state.js';
import { channelsOf, FrontStream, type StreamHost } from './front-stream.js';
import { ClusterTxn, MAX_REDIRECTS, OK, type Pend, redirect, type TxnHost } from './transaction.js';
import { mergeReplies, type Part, SPLIT, splitBySlot } from './split.js';
import { type ClusterNode, nodeKey, type Topology } from './topology.js';

/** What every front connection shares. */
export interface FrontContext {
  topo: Topology;
  table: CommandTable;
  /** A node's endpoint: its address with the cluster's credentials and TLS. */
  endpoint(n: ClusterNode): Endpoint;
  limits: FramerLimits;
  /** The old server's dbs merged into db 0 (--db-map N:0): SELECT N is SELECT 0 here. */
  mergedDbs: readonly number[];
}

const ASKING = Buffer.from('*1\r\n$6\r\nASKING\r\n');
/** SELECT 0, queued inside MULTI for a SELECT of a merged db. */
const SELECT_0: Request = (() => {
  const f = new RequestFramer();
  f.push(Buffer.from('*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n'));
  return f.next()!;
})();
const IGNORE = (): void => undefined;
/** Commands that run at once inside MULTI (everything else is queued here until EXEC). */
const TXN_CONTROL = new Set(['exec', 'discard', 'multi', 'watch', 'reset', 'quit']);
/** CLIENT and SCRIPT/FUNCTION subcommands every node must see. */
const CLIENT_STATE = new Set(['setname', 'setinfo']);
const BROADCAST = new Set(['script|load', 'script|flush', 'function|load', 'function|delete', 'function|flush', 'function|restore']);

export class FrontConn implements LinkHost, TxnHost, StreamHost, StateHost {
  private readonly framer: RequestFramer;
  private readonly out = new Deque<Pend>();
  private readonly links = new Map<string, NodeLink>();
  /** Connection state every node must share, replayed on each new link (AUTH, HELLO, names). */
  private readonly state = new SharedState(this);
  private readonly txn: ClusterTxn;
  private readonly stream: FrontStream;
  /** A SUBSCRIBE/MONITOR waiting for the replies before it to go out. */
  private toStream: { req: Request; node: ClusterNode } | null = null;
  /** The node of the last request sent (WAIT goes there). */
  private lastNode: ClusterNode | null = null;
  private ending = false;
  /** The client's socket buffer is full: node links are paused until it drains. */
  private blocked = false;
  closed = false;

  constructor(
    private readonly sock: net.Socket,
    readonly ctx: FrontContext,
    private readonly onClose: (c: FrontConn) => void,
  ) {
    this.framer = new RequestFramer(ctx.limits);
    this.txn = new ClusterTxn(this);
    this.stream = new FrontStream(this);
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => this.guard(() => this.onData(chunk)));
    // A client that does not read its replies: stop reading the nodes until it catches up, so
    // replies pile up in the nodes' output buffers (bounded there), not in this process.
    sock.on('drain', () => {
      this.blocked = false;
      for (const l of this.links.values()) l.resume();
    });
    sock.on('error', () => this.close());
    sock.on('close', () => this.close());
  }

  /** A bug closes this connection only (rehome's session sees it drop), never the process. */
  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      process.stderr.write(`${new Date().toISOString()} rehome: internal error in the cluster front, connection closed: ${(e as Error).stack ?? String(e)}\n`);
      this.close();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.destroy();
    for (const l of this.links.values()) l.close();
    this.links.clear();
    this.onClose(this);
  }

  // ---------------------------------------------------------------- links

  get openLinks(): Iterable<NodeLink> {
    return this.links.values();
  }

  link(n: ClusterNode): NodeLink {
    const k = nodeKey(n);
    let l = this.links.get(k);
    if (l === undefined) {
      l = new NodeLink(k, this.ctx.endpoint(n), this, this.state.replay);
      this.links.set(k, l);
      if (this.blocked) l.pause();
    }
    return l;
  }

  /**
   * LinkHost: a node connection is gone. One that was up carried this client's state (and a
   * phase switch kills connections to fence them): the client sees its connection drop, as if
   * direct. One that never connected (a node down) only failed its own requests, with the cause;
   * the next request to that node dials again, and the client keeps its other nodes.
   */
  linkGone(link: NodeLink, _reason: string, connected: boolean): void {
    if (this.links.get(link.key) === link) this.links.delete(link.key);
    if (connected || link.tunnel) this.close();
  }

  tunnelData(link: NodeLink, msg: Buffer): void {
    this.stream.data(link, msg);
  }

  // ---------------------------------------------------------------- StreamHost

  write(bytes: Buffer): void {
    if (!this.closed && !this.sock.write(bytes)) this.block();
  }

  ended(held: Request | null, reset: boolean): void {
    if (reset) {
      this.txn.reset();
      this.state.clear();
    }
    if (held !== null) this.handle(held);
    this.pump();
  }

  resume(): void {
    this.pump();
  }

  dropLink(l: NodeLink): void {
    if (this.links.get(l.key) === l) this.links.delete(l.key);
    l.close();
  }

  private block(): void {
    if (this.blocked) return;
    this.blocked = true;
    for (const l of this.links.values()) l.pause();
  }

  defaultNode(): ClusterNode | null {
    return this.ctx.topo.map.nodes[0] ?? null;
  }

  // ---------------------------------------------------------------- requests

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.framer.push(chunk);
    this.pump();
  }

  private pump(): void {
    for (;;) {
      if (this.closed || this.ending || this.toStream !== null || this.stream.holding) return;
      let req: Request | null;
      try {
        req = this.framer.next();
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        this.local(encodeError(ErrorText.protocol(e.message)));
        this.ending = true;
        this.flush();
        return;
      }
      if (req === null) return;
      if (this.stream.active) this.stream.request(req);
      else this.handle(req);
    }
  }

  push(): Pend {
    const p: Pend = { reply: null };
    this.out.push(p);
    return p;
  }

  local(reply: Buffer): void {
    this.push().reply = reply;
    this.flush();
  }

  done(p: Pend, reply: Buffer): void {
    p.reply = reply;
    if (this.out.peek() === p) this.flush();
  }

  private flush(): void {
    if (this.closed) return;
    let p = this.out.peek();
    if (p === undefined || p.reply === null) return;
    this.sock.cork();
    let ok = true;
    while (p !== undefined && p.reply !== null) {
      ok = this.sock.write(p.reply) && ok;
      this.out.shift();
      p = this.out.peek();
    }
    this.sock.uncork();
    if (!ok) this.block();
    if (this.out.length === 0) {
      if (this.ending) this.sock.end();
      else if (this.toStream !== null) this.startStream();
    }
  }

  private handle(req: Request): void {
    const name = req.name;
    if (this.txn.open && !TXN_CONTROL.has(name)) return this.txn.queue(name === 'select' && this.dbZero(req) ? SELECT_0 : req);
    switch (name) {
      case 'select':
        return this.local(this.dbZero(req) ? OK : encodeError(ErrorText.clusterSelect()));
      case 'readonly':
      case 'readwrite':
      case 'asking':
        return this.local(OK);
      case 'quit':
        this.local(OK);
        this.ending = true;
        return this.flush();
      case 'hello':
        // RESP3 brings push messages on any node's connection at any time, which the replies'
        // order here (one FIFO per node) can't place: clients stay on RESP2.
        if (req.argc >= 2 && argStr(req, 1) !== '2') return this.local(encodeError(ErrorText.clusterNoResp3()));
        return this.state.set(req, name);
      case 'auth':
        return this.state.set(req, name);
      case 'client':
        if (req.argc >= 2 && argLower(req, 1) === 'tracking') return this.local(encodeError(ErrorText.clusterNoTracking()));
        if (req.argc >= 3 && CLIENT_STATE.has(argLower(req, 1))) {
          return this.state.set(req, `client|${argLower(req, 1)}|${argLower(req, 1) === 'setinfo' ? argLower(req, 2) : ''}`);
        }
        return this.send(this.push(), req.raw, -2, 0);
      case 'reset':
        this.txn.reset();
        return this.state.reset(req);
      case 'multi':
        return this.txn.multi();
      case 'exec':
        if (!this.txn.open) return this.send(this.push(), req.raw, -2, 0); // the server's error
        return this.txn.exec(this.push());
      case 'discard':
        if (!this.txn.open) return this.send(this.push(), req.raw, -2, 0);
        return this.txn.discard();
      case 'watch':
        if (this.txn.open) return this.local(encodeError('ERR WATCH inside MULTI is not allowed'));
        return this.txn.watchKeys(req);
      case 'unwatch':
        this.txn.unwatch();
        return this.local(OK);
      case 'subscribe':
      case 'psubscribe':
      case 'monitor': {
        const n = this.defaultNode();
        if (n === null) return this.local(encodeError(ErrorText.slotUnserved()));
        return this.streamFrom(req, n);
      }
      case 'ssubscribe': {
        // Shard channels hash like keys; the command table does not list them as keys.
        const slot = req.argc < 2 ? -2 : commonSlot(channelsOf(req));
        if (slot === -1) return this.local(encodeError(ErrorText.crossSlot()));
        const n = slot >= 0 ? this.ctx.topo.nodeFor(slot) : this.defaultNode();
        if (n === null) return this.local(encodeError(ErrorText.slotUnserved()));
        return this.streamFrom(req, n);
      }
      case 'wait':
      case 'waitaof': {
        const n = this.lastNode ?? this.defaultNode();
        if (n === null) return this.local(encodeError(ErrorText.slotUnserved()));
        const p = this.push();
        return this.link(n).send(req.raw, (r) => this.done(p, r));
      }
      case 'script':
      case 'function':
        if (req.argc >= 2 && BROADCAST.has(`${name}|${argLower(req, 1)}`)) return this.everyMaster(req);
        return this.send(this.push(), req.raw, -2, 0);
      default:
        if (KEYSPACE_WIDE.has(name) || isInfoWithKeyspace(req)) return this.keyspace(req);
        return this.routeKeys(req);
    }
  }

  /** SELECT 0, or SELECT of a db merged into 0 (--db-map): both are the cluster's one db. */
  private dbZero(req: Request): boolean {
    if (req.argc !== 2) return false;
    const db = argStr(req, 1);
    return db === '0' || (/^\d{1,5}$/.test(db) && this.ctx.mergedDbs.includes(Number(db)));
  }

  private routeKeys(req: Request): void {
    const keys = this.ctx.table.keys(req);
    // Keys only the server can tell: the first master, whose MOVED (if any) says where.
    if (keys === null || keys.length === 0) return this.send(this.push(), req.raw, -2, 0);
    const slot = commonSlot(keys);
    if (slot >= 0) {
      return this.send(this.push(), req.raw, slot, 0);
    }
    const step = SPLIT.get(req.name);
    if (step === undefined || (req.argc - 1) % step !== 0) return this.local(encodeError(ErrorText.crossSlot()));
    this.split(req, step);
  }

  /** Sends a request to the master of `slot` (-2: the first master), following MOVED and ASK. */
  private send(p: Pend, bytes: Buffer, slot: number, tries: number): void {
    this.sendTo((r) => this.done(p, r), bytes, slot, tries);
  }

  /** Like send(), the reply going to `fin` (a split part's goes to its merge). */
  private sendTo(fin: (r: Buffer) => void, bytes: Buffer, slot: number, tries: number): void {
    const n = slot >= 0 ? this.ctx.topo.nodeFor(slot) : this.defaultNode();
    if (n === null) return fin(encodeError(ErrorText.slotUnserved()));
    this.lastNode = n;
    this.link(n).send(bytes, (r) => this.routed(fin, bytes, slot, tries, r));
  }

  private routed(fin: (r: Buffer) => void, bytes: Buffer, slot: number, tries: number, r: Buffer): void {
    if (r[0] === 0x2d && !this.closed) {
      const rd = redirect(r);
      if (rd !== null) {
        if (tries >= MAX_REDIRECTS) return fin(encodeError(ErrorText.clusterRedirects(rd.slot)));
        if (!rd.ask) {
          // The node did not run it: the slot lives elsewhere now (a reshard, a failover).
          this.ctx.topo.moved(rd.slot, rd.node);
          return this.sendTo(fin, bytes, rd.slot, tries + 1);
        }
        // The slot is being migrated and the key is not in its old node: ask the new one once.
        const l = this.link(rd.node);
        l.send(ASKING, IGNORE);
        l.send(bytes, (r2) => this.routed(fin, bytes, slot, tries + 1, r2));
        return;
      }
      // A multi-key command while its slot is being migrated: the cluster asks to retry later.
      if (r.toString('latin1', 0, 9) === '-TRYAGAIN' && r.includes('rehashing') && tries < MAX_REDIRECTS) {
        setTimeout(() => this.sendTo(fin, bytes, slot, tries + 1), 10 * (tries + 1)).unref();
        return;
      }
    }
    fin(r);
  }

  private split(req: Request, step: number): void {
    const p = this.push();
    const parts: Part[] = splitBySlot(req, step);
    const replies: Buffer[] = new Array<Buffer>(parts.length);
    let left = parts.length;
    // Each part follows its own redirects; the merge waits for all of them.
    parts.forEach((part, i) => {
      this.sendTo((r) => {
        replies[i] = r;
        if (--left === 0) this.done(p, mergeReplies(req.name, parts, replies));
      }, part.bytes, part.slot, 0);
    });
  }

  // ---------------------------------------------------------------- every master, streams

  private keyspace(req: Request): void {
    const p = this.push();
    void allMasters({ ...req, raw: Buffer.from(req.raw) }, {
      masters: () => this.ctx.topo.map.nodes.map(nodeKey),
      call: (k, bytes) => this.link(this.ctx.topo.map.nodes.find((n) => nodeKey(n) === k)!).call(bytes),
    }).then((r) => this.done(p, r), (e: Error) => this.done(p, encodeError(`ERR rehome: ${e.message}`)));
  }

  /** SCRIPT LOAD and the like on every master: the first error, else the first reply. */
  private everyMaster(req: Request): void {
    const p = this.push();
    const raw = Buffer.from(req.raw);
    void Promise.all(this.ctx.topo.map.nodes.map((n) => this.link(n).call(raw))).then((rs) => this.done(p, rs.find((r) => r[0] === 0x2d) ?? rs[0] ?? OK));
  }

  /** The stream starts once every reply before it is out (the client's chunk is not kept). */
  private streamFrom(req: Request, node: ClusterNode): void {
    this.toStream = { req: { ...req, raw: Buffer.from(req.raw) }, node };
    if (this.out.length === 0) this.startStream();
  }

  private startStream(): void {
    const t = this.toStream!;
    this.toStream = null;
    this.stream.start(t.req, t.node);
    this.pump();
  }
}
