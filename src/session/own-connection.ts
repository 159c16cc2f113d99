/**
 * The client's own connection to the target: for its commands that carry connection state (the
 * others travel on the shared lane). Opened at the first command that needs it, named for the
 * fence before anything of the client's runs on it (fence.ts), and kept alive while the client
 * works on the lane only.
 */
import net from 'node:net';
import { connectSocket, connectedEvent } from '../upstream/connect.js';
import { encodeRequest, PING_REQUEST } from '../resp/request-framer.js';
import { type FenceHost, OwnFence } from './fence.js';
import type { ConnectionView, SessionContext } from './port.js';

/** What the own connection needs of its session. */
export interface OwnHost extends FenceHost {
  /** The target's replies. */
  ownData(chunk: Buffer): void;
  /** The connection failed or closed. */
  ownGone(reason: string): void;
  /** The socket's write buffer drained. */
  ownDrained(): void;
}

export class OwnConnection {
  /**
   * Until open(), a socket that never connects: the session may pause, cork or destroy it before
   * the client needs the connection. open() puts the connected one (TCP or TLS) in its place.
   */
  socket = new net.Socket();
  /** The connect completed (a failure before it is reported as "cannot connect"). */
  connected = false;
  /** connect() was called: see open(). */
  opened = false;
  readonly fence: OwnFence;
  /** CLIENT SETINFO requests answered on the lane before this opened (sent again when it does). */
  private deferredInfo: Buffer[] = [];

  constructor(private readonly host: OwnHost) {
    this.fence = new OwnFence(host);
    this.listen(this.socket, 'connect');
  }

  private listen(sock: net.Socket, connected: 'connect' | 'secureConnect'): void {
    const host = this.host;
    sock.setNoDelay(true);
    sock.on(connected, () => {
      this.connected = true;
    });
    sock.on('data', (chunk: Buffer) => host.ownData(chunk));
    sock.on('error', (err) => host.ownGone(err.message));
    sock.on('close', () => host.ownGone('connection closed'));
    sock.on('drain', () => host.ownDrained());
  }

  private get ctx(): SessionContext {
    return this.host.ctx;
  }

  private get conn(): ConnectionView {
    return this.host.conn;
  }

  /**
   * Opens the connection if it is not open yet and names it for the fence (phases). Returns a
   * promise while the fence holds: nothing of the client's may run on the connection before it is
   * named and the phase checked (send-queue.ts waits on it).
   */
  open(): Promise<void> | null {
    if (!this.opened) {
      this.opened = true;
      const ep = this.ctx.targetEndpoint;
      const placeholder = this.socket;
      placeholder.removeAllListeners();
      this.socket = connectSocket(ep);
      this.listen(this.socket, connectedEvent(ep));
      if (placeholder.isPaused()) this.socket.pause();
      // Without AUTH the connection is named now; with AUTH once the client has authenticated.
      if (this.ctx.fence !== null && this.conn.authed) this.fence.start();
      // The client's db, selected on a shared lane before this connection existed.
      if (this.conn.db !== 0) this.host.sendInternal(encodeRequest(['SELECT', String(this.conn.db)]).raw, () => undefined);
      for (const info of this.deferredInfo) this.host.sendInternal(info, () => undefined);
      this.deferredInfo = [];
    }
    return this.fence.ready;
  }

  /** Names the connection for the fence again (after AUTH, after RESET), opening it if needed. */
  startFence(): void {
    if (this.opened) this.fence.start();
    else this.open();
  }

  /** Keeps a copy of a CLIENT SETINFO answered on the lane, for when this opens. */
  deferInfo(raw: Buffer): void {
    this.deferredInfo.push(Buffer.from(raw)); // a copy: raw is a view of the client's chunk
  }

  /**
   * Called every few seconds (server.ts) through the session: a client that works on the shared
   * lane leaves this connection idle, and a server with an idle `timeout` would close it and with
   * it the client. A PING on a connection idle since the last call (`idle`) keeps it open.
   */
  keepAlive(idle: boolean, quiet: boolean): void {
    if (!idle || !quiet || !this.opened || !this.connected || this.conn.pinned || this.fence.holding) return;
    this.host.sendInternal(PING_REQUEST, () => undefined);
  }
}
