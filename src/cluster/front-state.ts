/**
 * A front connection's state every node must share (front-conn.ts): AUTH, HELLO, CLIENT
 * SETNAME/SETINFO go to every node link open now and are replayed on each new one, so every node
 * sees the same client (and the fenced name: a phase switch's CLIENT KILL on any node ends it).
 * The first master's reply is the client's; a refusal there undoes the change here too (rule 6).
 */
import { ErrorText } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import type { Request } from '../resp/request-framer.js';
import type { NodeLink } from './node-link.js';
import type { ClusterNode } from './topology.js';
import type { Pend } from './transaction.js';

/** What the shared state needs of its front connection. */
export interface StateHost {
  readonly openLinks: Iterable<NodeLink>;
  link(n: ClusterNode): NodeLink;
  defaultNode(): ClusterNode | null;
  push(): Pend;
  local(reply: Buffer): void;
  done(p: Pend, reply: Buffer): void;
}

const IGNORE = (): void => undefined;

export class SharedState {
  private readonly state = new Map<string, Buffer>();

  constructor(private readonly host: StateHost) {}

  /** What a new link replays first. */
  get replay(): Buffer[] {
    return [...this.state.values()];
  }

  clear(): void {
    this.state.clear();
  }

  /** A state command of `kind` (one entry per kind: the last one wins). */
  set(req: Request, kind: string): void {
    const h = this.host;
    const n = h.defaultNode();
    if (n === null) return h.local(encodeError(ErrorText.slotUnserved()));
    const raw = Buffer.from(req.raw); // kept: the client's chunk is not
    const first = h.link(n);
    for (const l of h.openLinks) if (l !== first) l.send(raw, IGNORE);
    const before = this.state.get(kind);
    this.state.set(kind, raw);
    const p = h.push();
    first.send(raw, (r) => {
      // Refused: nothing changed on the server, nor here.
      if (r[0] === 0x2d && this.state.get(kind) === raw) {
        if (before === undefined) this.state.delete(kind);
        else this.state.set(kind, before);
      }
      h.done(p, r);
    });
  }

  /** RESET on every open link; the state is gone. */
  reset(req: Request): void {
    const h = this.host;
    this.state.clear();
    const n = h.defaultNode();
    if (n === null) return h.local(encodeError(ErrorText.slotUnserved()));
    const first = h.link(n);
    for (const l of h.openLinks) if (l !== first) l.send(req.raw, IGNORE);
    const p = h.push();
    first.send(req.raw, (r) => h.done(p, r));
  }
}
