/**
 * Pub/sub and MONITOR through the cluster front (front-conn.ts): while a connection is subscribed
 * or monitoring, what the nodes send goes to it as whole messages, in the order each node sends
 * them, and what it sends goes to the node as it is.
 *
 *   SUBSCRIBE / PSUBSCRIBE   one node, the first master: a cluster carries PUBLISH to every node,
 *                            so a subscriber on one node gets every publish, wherever it was sent
 *   SSUBSCRIBE               the master of the channel's slot (its SPUBLISH lands there); a
 *                            shard channel of another master on the same connection is refused
 *   MONITOR                  every master: each prints the commands it runs (only the first
 *                            master's OK goes to the client)
 *
 * Leaving: a command that is not allowed while subscribed is held behind a PING with a token of
 * rehome's own. Its answer says whether the node still holds subscriptions: an array (a
 * subscribed connection's PING reply) -> the server's own "only (P|S)SUBSCRIBE ..." error; a bulk
 * string -> the connection is back in normal mode, the stream ends and the held command is routed
 * as usual (to any node). RESET ends MONITOR on every master.
 */
import { randomBytes } from 'node:crypto';
import { ErrorText } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import { argBuf, encodeRequest, type Request } from '../resp/request-framer.js';
import type { NodeLink } from './node-link.js';
import { commonSlot } from './slot.js';
import { type ClusterNode, nodeKey, type Topology } from './topology.js';

const RESET_REPLY = Buffer.from('+RESET\r\n');
/** Allowed while subscribed (anything else is checked behind the PING). */
const IN_STREAM = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe', 'ping', 'quit', 'reset']);

/** What a stream needs of its front connection. */
export interface StreamHost {
  readonly ctx: { topo: Topology };
  link(n: ClusterNode): NodeLink;
  /** Closes a link and forgets it (the next request to its node dials again). */
  dropLink(l: NodeLink): void;
  /** Bytes straight to the client (nothing else is in its reply order while a stream lasts). */
  write(bytes: Buffer): void;
  /**
   * The stream ended: `held` (if any) is handled as a normal request, then reading goes on. After
   * a RESET the connection's own state (AUTH, names, transaction) is gone too.
   */
  ended(held: Request | null, reset: boolean): void;
  /** Reading goes on (a held request was answered within the stream). */
  resume(): void;
}

export class FrontStream {
  /** The link requests go to; null: no stream. */
  private main: NodeLink | null = null;
  /** MONITOR: every master's link, and those whose own OK is still to come (dropped). */
  private all: NodeLink[] = [];
  private readonly quietOk = new Set<NodeLink>();
  private monitor = false;
  private held: Request | null = null;
  private token: Buffer | null = null;

  constructor(private readonly host: StreamHost) {}

  get active(): boolean {
    return this.main !== null;
  }

  /** True while a request waits for the PING's answer (the connection reads nothing meanwhile). */
  get holding(): boolean {
    return this.held !== null;
  }

  /** Starts a stream with its first request (everything before it has been answered). */
  start(req: Request, node: ClusterNode): void {
    this.monitor = req.name === 'monitor';
    const main = this.host.link(node);
    this.main = main;
    this.all = this.monitor ? this.host.ctx.topo.map.nodes.map((n) => this.host.link(n)) : [main];
    for (const l of this.all) {
      l.tunnel = true;
      if (l !== main) this.quietOk.add(l);
      l.write(req.raw);
    }
  }

  /** A request while the stream lasts. */
  request(req: Request): void {
    const main = this.main!;
    if (this.monitor) {
      // A monitoring connection runs what it is sent (answered in the stream), on the first
      // master. RESET ends MONITOR there; the other masters' links close (opened again on use).
      if (req.name === 'reset') for (const l of this.all) if (l !== main) this.host.dropLink(l);
      main.write(req.raw);
      return;
    }
    if (!IN_STREAM.has(req.name)) {
      this.held = { ...req, raw: Buffer.from(req.raw) };
      this.token = Buffer.from(`__rehome:front-stream:${randomBytes(8).toString('hex')}`);
      main.write(encodeRequest([Buffer.from('PING'), this.token]).raw);
      return;
    }
    if (req.name === 'ssubscribe') {
      const slot = commonSlot(channelsOf(req));
      const n = slot >= 0 ? this.host.ctx.topo.nodeFor(slot) : null;
      if (slot === -1) return this.host.write(encodeError(ErrorText.crossSlot()));
      if (n !== null && nodeKey(n) !== main.key) {
        return this.host.write(encodeError(ErrorText.clusterOtherShard()));
      }
    }
    main.write(req.raw);
  }

  /** One whole message from a node of the stream. */
  data(link: NodeLink, msg: Buffer): void {
    if (this.quietOk.delete(link) && msg[0] === 0x2b) return;
    if (link === this.main && msg.equals(RESET_REPLY)) {
      // RESET ends the stream (subscriptions, MONITOR) and the connection's state.
      this.stop();
      this.host.write(msg);
      this.host.ended(null, true);
      return;
    }
    if (this.token !== null && link === this.main && this.isTokenReply(msg)) {
      const held = this.held!;
      this.held = null;
      this.token = null;
      if (msg[0] === 0x2a) {
        // Still subscribed: the server's own refusal, as it would answer the command itself.
        this.host.write(encodeError(ErrorText.pubsubContext(held.name)));
        this.host.resume();
        return;
      }
      this.stop();
      this.host.ended(held, false);
      return;
    }
    this.host.write(msg);
  }

  private isTokenReply(msg: Buffer): boolean {
    const t = this.token!;
    return msg.length >= t.length + 2 && msg.subarray(msg.length - t.length - 2, msg.length - 2).equals(t);
  }

  private stop(): void {
    for (const l of this.all) l.tunnel = false;
    this.quietOk.clear();
    this.all = [];
    this.main = null;
    this.monitor = false;
  }
}

/** A SSUBSCRIBE's channels (latin1): they hash to slots as keys do, but are no keys to the command table. */
export function channelsOf(req: Request): string[] {
  const out: string[] = [];
  for (let i = 1; i < req.argc; i++) out.push(argBuf(req, i).toString('latin1'));
  return out;
}
