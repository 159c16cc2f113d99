/**
 * What a client session shares with the rest of the proxy (SessionContext), and what the command
 * families (dispatch.ts, gate.ts, connection-state.ts, pubsub.ts, keyspace.ts) may read and do
 * with one client's session (SessionPort). The families talk to the session only through the port.
 */
import type { CommandTable } from '../commands/table.js';
import type { Mover } from '../migration/mover.js';
import type { SessionFence } from '../phase/phase.js';
import type { ClientLimits } from '../config.js';
import type { FramerLimits, Request } from '../resp/request-framer.js';
import type { Protocol } from '../resp/resp3.js';
import type { ControlPool } from '../upstream/control.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { Entry } from './entry.js';
import type { SharedLanes } from './shared-lane.js';
import type { ScopeRouting, SideMark } from './scope-routing.js';

export type { SessionFence };

/** What the proxy holds of a session (server.ts keeps them in a set). */
export interface SessionHandle {
  readonly id: number;
}

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
  /** maxclients, query and output buffer limits, idle timeout (src/session/limits.ts). */
  clientLimits: ClientLimits;
  /** The proxy's log (a client closed by a limit). */
  log: (line: string) => void;
  onClose(s: SessionHandle): void;
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
  /** A canary migration: keys are routed by the scope first (scope-route.ts); null: no scope. */
  scope: ScopeRouting | null;
}

/**
 * The client's connection as rehome sees it. Changed only by connection-state.ts and pubsub.ts,
 * on the server's reply (docs/DESIGN.md rule 6).
 */
export class ConnectionView {
  /** The db keys are moved in. */
  db = 0;
  inMulti = false;
  /** The db when MULTI began (DISCARD and an aborted EXEC go back to it). */
  multiDb = 0;
  /** A SELECT was queued in the open MULTI: the db after EXEC depends on EXEC's outcome. */
  multiSelect = false;
  /** Commands queued in the open MULTI so far. */
  multiQueued = 0;
  /** Where in the open MULTI an INFO with the keyspace section sits (its EXEC merges it). */
  multiInfoAt: number[] = [];
  authed: boolean;
  /**
   * Connection-state commands sent and not yet answered: nothing after such a command is
   * dispatched before its reply.
   */
  statePending = 0;
  subscribed = false;
  /** MONITOR mode: every reply belongs to the stream entry. */
  monitoring = false;
  /** Phases: the upstream carries this session's fenced name. */
  named = false;
  /** Phases: the name the client gave itself (CLIENT SETNAME), shown by CLIENT GETNAME. */
  clientName: string | null = null;
  /**
   * The client uses only its own connection from now on: it changed its connection's state, or
   * there are no lanes, or the target needs AUTH.
   */
  pinned: boolean;
  /** The AUTH (or HELLO with AUTH) the server accepted last, replayed after a phase switch. */
  authRequest: Buffer | null = null;
  /** CLIENT SETINFO requests by attribute, replayed after a phase switch. */
  clientInfo = new Map<string, Buffer>();
  /** No state a phase switch cannot carry (carry.ts): the session may move to the next phase. */
  carriable = true;
  /** The protocol the server accepted in HELLO: the shape of rehome's own replies follows it. */
  resp: Protocol = 2;
  /** RESP3 (P|S)SUBSCRIBE ran: pushes may come at any time (the client is never idle). */
  pushSubscribed = false;
  /** The CLIENT TRACKING ON the server accepted last (no REDIRECT), replayed after a switch. */
  tracking: Buffer | null = null;
  /** A CLIENT CACHING the server accepted, for the command after it (replayed with tracking). */
  cachingNext: Buffer | null = null;

  constructor(authed: boolean, pinned: boolean) {
    this.authed = authed;
    this.pinned = pinned;
  }
}

/** Phases: what connection-state.ts does with the fence of the client's own connection. */
export interface OwnFenceControls {
  /** Names the connection for the epoch, then checks the phase; nothing runs meanwhile. */
  startFence(): void;
  readonly fence: {
    /** CLIENT SETNAME for the fenced name carrying the client's own name. */
    nameRequest(clientName: string | null): Buffer;
    /** That name alone (for a HELLO ... SETNAME). */
    nameRequestName(clientName: string | null): Buffer;
  };
}

/** What a command family may read and do with one client's session. */
export interface SessionPort {
  readonly ctx: SessionContext;
  readonly conn: ConnectionView;
  /** Adds an entry in reply order; it is sent once nothing waits before it. */
  enqueue(e: Entry): void;
  /** Forwards a request as it is, in order. */
  forwardPlain(req: Request): void;
  /** A canary migration: the entries of the request being dispatched carry its side of the scope. */
  markSide(mark: SideMark): void;
  /** Answers a request with a reply of rehome's own, in order. */
  localReply(req: Request | null, reply: Buffer): void;
  /** Answers with an error in order; inside MULTI the EXEC then aborts. */
  refuse(req: Request, text: string): void;
  /**
   * rehome's own request as this client, for a command running alone (nothing of the client's
   * is in flight): on its own connection, or on the shared lane while the client uses it (the
   * same user: lanes exist only where clients need no AUTH); resolves with the target's reply.
   */
  callAsClient(bytes: Buffer): Promise<Buffer>;
  /** Bytes for the client's connection outside the reply order (answered inside a stream). */
  sendRaw(bytes: Buffer): void;
  /** Writes queued bytes to the target now. */
  flushUp(): void;
  /**
   * Sends the SELECT entry `e` (of db `db`) on that db's shared lane if the client has no
   * connection of its own yet; false (and nothing changed) otherwise.
   */
  selectOnLane(e: Entry, db: number): boolean;
  /** Holds `req`: it is dispatched again by release(). */
  hold(req: Request): void;
  /** Dispatches the held request on the next tick, if nothing else holds it. */
  release(): void;
  /** Frames and dispatches what the client sent, on the next tick. */
  resume(): void;
  /** Phases: the fence of the client's own connection (own-connection.ts, fence.ts). */
  readonly own: OwnFenceControls;
  /** Writes a stream's reply now if its entry is at the front, else keeps it. */
  emit(e: Entry, reply: Buffer): void;
  /** Ends a stream entry: the replies after it go out. */
  endStream(e: Entry): void;
}
