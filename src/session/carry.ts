/**
 * Carrying a client across a phase switch (docs/DESIGN.md, "Phases": the gentle switch). When a
 * switch begins, a session stops dispatching; once nothing of its client is in flight it is
 * detached: the client's socket, the bytes it sent that were not yet dispatched, and the state of
 * its connection as requests to replay. The next phase's runtime opens a session for it that
 * replays those requests on its new connection (their replies unseen) before anything else, so
 * the client sees neither an error nor a closed connection.
 *
 * What is carried: AUTH (or HELLO with AUTH), the protocol (HELLO 3), the db, the name, CLIENT
 * SETINFO, and client-side caching (CLIENT TRACKING without REDIRECT, a pending CLIENT CACHING).
 * The new connection's tracking knows none of the keys the client cached through the old one,
 * so a RESP3 tracking client is first sent the invalidation that drops its whole cache. A client
 * with state that cannot be replayed (WATCH, tracking with REDIRECT, READONLY, a module's
 * command, an open MULTI, a subscription, MONITOR, a blocking command still in flight) is closed
 * as before the gentle switch; its client library reconnects (and drops its cache).
 */
import type net from 'node:net';
import { encodeRequest, type Request, RequestFramer } from '../resp/request-framer.js';
import type { ConnectionView } from './port.js';

/** A client between two phases. */
export interface Carried {
  readonly client: net.Socket;
  readonly id: number;
  /** Holds what the client sent that was not dispatched yet. */
  readonly framer: RequestFramer;
  /** Requests that set the connection's state, in order. */
  readonly replay: Request[];
  /** A request framed but not dispatched yet (it waited for the switch). */
  readonly held: Request | null;
  /** The client used its own connection only (it changed the connection's state). */
  readonly pinned: boolean;
  /** A RESP3 client tracking keys: it must drop its cache before anything else reaches it. */
  readonly invalidate: boolean;
}

/** Pinning commands whose state the switch carries (the others make a client not carriable). */
export const CARRIED_STATE = new Set(['select', 'auth', 'hello', 'reset', 'multi']);

/** The requests that rebuild `conn`'s state on a new connection. */
export function replayRequests(conn: ConnectionView): Request[] {
  const out: Request[] = [];
  if (conn.authRequest !== null) out.push(reframe(conn.authRequest));
  if (conn.resp === 3) out.push(encodeRequest(['HELLO', '3']));
  if (conn.db !== 0) out.push(encodeRequest(['SELECT', String(conn.db)]));
  if (conn.clientName !== null) out.push(encodeRequest(['CLIENT', 'SETNAME', Buffer.from(conn.clientName, 'latin1')]));
  for (const raw of conn.clientInfo.values()) out.push(reframe(raw));
  if (conn.tracking !== null) out.push(reframe(conn.tracking));
  if (conn.cachingNext !== null) out.push(reframe(conn.cachingNext));
  return out;
}

function reframe(raw: Buffer): Request {
  const f = new RequestFramer();
  f.push(raw);
  return f.next()!;
}
