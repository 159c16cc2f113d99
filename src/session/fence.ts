/**
 * Phases: the client's own connection to the target carries a name for the epoch (CLIENT SETNAME
 * rehome-e<epoch>-client[.<client's name>]) before anything of the client runs on it, and is used
 * only if the phase read after naming it is still the session's (src/phase/phase.ts). A switch
 * finds the name and kills the connection. Nothing is dispatched while the fence holds.
 */
import { encodeRequest } from '../resp/request-framer.js';
import type { ConnectionView, SessionContext } from './port.js';

/** What the fence needs of its session. */
export interface FenceHost {
  readonly ctx: SessionContext;
  readonly conn: ConnectionView;
  /** Sends rehome's own request on the client's connection; its reply goes to `f`. */
  sendInternal(bytes: Buffer, f: (reply: Buffer) => void): void;
  /** The fence no longer holds: dispatch what waits. */
  fenceLifted(): void;
  /** The phase moved on: the session is over. */
  fenceFailed(reason: string): void;
}

export class OwnFence {
  /** The connection is not yet named and checked for the epoch. */
  holding = false;
  /** While holding: resolves when the fence lifts, or the session fails (see SendQueue.add). */
  ready: Promise<void> | null = null;
  private readyNow: (() => void) | null = null;

  constructor(private readonly host: FenceHost) {}

  /** Names the connection, then checks the phase (once per name: after RESET and AUTH again). */
  start(): void {
    const host = this.host;
    const fence = host.ctx.fence;
    const conn = host.conn;
    if (fence === null || conn.named) return;
    this.holding = true;
    this.ready = new Promise((resolve) => {
      this.readyNow = resolve;
    });
    conn.named = true;
    host.sendInternal(this.nameRequest(conn.clientName), (reply) => {
      if (reply[0] !== 0x2b) {
        // Not authenticated yet (NOAUTH): nothing can run; try again after AUTH.
        conn.named = false;
        this.lift();
        return;
      }
      fence.verify().then(
        () => this.lift(),
        (err: Error) => {
          // The session fails: what waited for the connection gets the error (failAll).
          host.fenceFailed(err.message);
          this.release();
        },
      );
    });
  }

  private lift(): void {
    if (!this.holding) return;
    this.holding = false;
    this.release();
    this.host.fenceLifted();
  }

  private release(): void {
    const f = this.readyNow;
    this.ready = null;
    this.readyNow = null;
    f?.();
  }

  /** CLIENT SETNAME for the fenced name, carrying the client's own name after a dot. */
  nameRequest(clientName: string | null): Buffer {
    return encodeRequest([Buffer.from('CLIENT'), Buffer.from('SETNAME'), this.nameRequestName(clientName)]).raw;
  }

  nameRequestName(clientName: string | null): Buffer {
    const base = `rehome-e${this.host.ctx.fence!.epoch}-client`;
    return Buffer.from(clientName === null ? base : `${base}.${clientName}`, 'latin1');
  }
}
