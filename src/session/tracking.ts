/**
 * Client-side caching (CLIENT TRACKING, CLIENT CACHING) as connection state (docs/DESIGN.md,
 * "RESP3 and client-side caching"). Every key a client reads through rehome is read on the target,
 * on the client's own connection, after the gate has confirmed it absent from the source; so the
 * target's own tracking on that connection sees every read and every later change of the key.
 * rehome only remembers what to replay when a phase switch gives the client a new connection.
 */
import { argLower, type Request } from '../resp/request-framer.js';
import { changesState } from './connection-state.js';
import { Entry } from './entry.js';
import type { ConnectionView, SessionPort } from './port.js';

/**
 * CLIENT TRACKING and CLIENT CACHING: a phase switch carries them (replayed on the next phase's
 * connection) unless tracking redirects to another connection, whose id names a connection of
 * the phase that ends.
 */
export function carriedClientState(req: Request): boolean {
  const sub = argLower(req, 1);
  if (sub === 'caching') return true;
  return sub === 'tracking' && !hasRedirect(req);
}

function hasRedirect(req: Request): boolean {
  for (let i = 3; i < req.argc; i++) if (argLower(req, i) === 'redirect') return true;
  return false;
}

/**
 * CLIENT CACHING applies to the command after it on the connection: remembered until another
 * command is dispatched, so a switch in between replays it before that command.
 */
export function noteCaching(conn: ConnectionView, req: Request): void {
  if (req.name === 'client' && req.argc === 3 && argLower(req, 1) === 'caching') {
    conn.cachingNext = Buffer.from(req.raw); // a copy: raw is a view of the client's bytes
  } else if (conn.cachingNext !== null) {
    conn.cachingNext = null;
  }
}

/**
 * CLIENT TRACKING: rehome's view follows the server's OK (rule 6). Returns false for other CLIENT
 * subcommands.
 */
export function clientTracking(s: SessionPort, req: Request): boolean {
  if (req.argc < 3 || argLower(req, 1) !== 'tracking') return false;
  const on = argLower(req, 2) === 'on';
  const redirect = hasRedirect(req);
  const raw = Buffer.from(req.raw);
  const e = new Entry(req);
  changesState(s, e, (ok) => {
    if (!ok) return;
    const conn = s.conn;
    conn.tracking = on && !redirect ? raw : null;
    if (on && redirect) conn.carriable = false;
  });
  s.enqueue(e);
  return true;
}
