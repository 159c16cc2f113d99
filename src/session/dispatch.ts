/**
 * One request's way in: one look-up in the command table, the checks below in this order, then
 * one switch to the family that handles it.
 *
 *   1. the client's connection to the target failed        -> the error, then close
 *   2. a connection-state command awaits its reply          -> held (docs/DESIGN.md rule 6)
 *   3. a pub/sub or MONITOR stream is open                  -> pubsub.ts
 *   4. refused through rehome (REFUSED)                     -> error
 *   5. the client has not authenticated                     -> forwarded, nothing moved (NOAUTH)
 *   6. the command's family: connection state (connection-state.ts), keyspace-wide (keyspace.ts,
 *      run alone), pub/sub (pubsub.ts), everything with keys (in a canary migration routed by the
 *      scope first: scope-route.ts; then gate.ts)
 */
import type { Classified } from '../commands/table.js';
import { ErrorText } from '../errors.js';
import { argLower, type Request } from '../resp/request-framer.js';
import { CARRIED_STATE } from './carry.js';
import * as state from './connection-state.js';
import { gate, gateCopy, gateMove, gateSort } from './gate.js';
import * as keyspace from './keyspace.js';
import { routeByScope } from './scope-route.js';
import { SUBSCRIBE_FAMILY, type PubSub, type StreamPort } from './pubsub.js';
import { carriedClientState, clientTracking, noteCaching } from './tracking.js';

/** What dispatch needs of the session besides what the families use. */
export interface DispatchPort extends StreamPort {
  readonly pubsub: PubSub;
  /** Why the client's own connection failed, or null. */
  readonly upstreamFailed: string | null;
  /** CLIENT SETINFO before the client has an own connection (see Session.clientInfo). */
  clientInfo(req: Request): boolean;
  /** Answers with the failure of the own connection and closes the client. */
  failRequest(req: Request): void;
  /**
   * A keyspace-wide command: true when it may run now, alone (nothing earlier outstanding, and
   * nothing later starts before it ends); false when it was held until then.
   */
  runAlone(req: Request): boolean;
}

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

/**
 * Commands after which a client's own connection carries state that its later commands depend
 * on: a transaction or WATCH, authentication and protocol, pub/sub, MONITOR, client-side
 * caching, reply mode. Such a client is pinned to its own connection for good. (The db is not
 * among them: each db has lanes of its own, shared-lane.ts.)
 */
const PINNING = new Set([
  'auth', 'hello', 'reset', 'multi', 'watch', 'subscribe', 'psubscribe', 'ssubscribe',
  'readonly', 'readwrite', 'asking', 'monitor',
]);
const PINNING_CLIENT = new Set(['tracking', 'caching', 'reply', 'no-evict', 'no-touch']);

/** Commands that run at once inside MULTI instead of being queued. */
const NOT_QUEUED = new Set(['multi', 'exec', 'discard', 'watch', 'reset', 'quit']);

/** Routes one request; `c` is the table's answer for it. */
export function dispatch(s: DispatchPort, req: Request, c: Classified): void {
  const name = req.name;
  const conn = s.conn;
  if ((!conn.pinned || conn.carriable) && pins(req, c)) {
    conn.pinned = true;
    if (!CARRIED_STATE.has(name) && !(name === 'client' && carriedClientState(req))) conn.carriable = false;
  }
  noteCaching(conn, req);
  if (s.upstreamFailed !== null) {
    s.failRequest(req);
    return;
  }
  if (conn.statePending > 0) {
    s.hold(req);
    return;
  }
  if ((conn.subscribed || conn.monitoring) && s.pubsub.whileStreaming(req)) return;
  const refusal = REFUSED.get(name);
  if (refusal !== undefined) {
    s.refuse(req, ErrorText.refused(name.toUpperCase(), refusal));
    return;
  }
  if (!conn.authed && name !== 'auth' && name !== 'hello') {
    // The target rejects it (NOAUTH) without running it; nothing is moved for this client.
    s.forwardPlain(req);
    return;
  }
  // Its place in the EXEC's reply (commands Redis does not queue are not counted).
  if (conn.inMulti && !NOT_QUEUED.has(name)) conn.multiQueued++;
  switch (name) {
    case 'select':
      return state.select(s, req);
    case 'multi':
      return state.multi(s, req);
    case 'exec':
      return state.exec(s, req);
    case 'discard':
      return state.discard(s, req);
    case 'auth':
      return state.auth(s, req);
    case 'hello':
      return state.hello(s, req);
    case 'reset':
      return state.reset(s, req);
    case 'monitor':
      return s.pubsub.monitor(req);
    case 'quit':
      return s.forwardPlain(req);
    case 'client':
      if (req.argc >= 3 && argLower(req, 1) === 'reply' && argLower(req, 2) !== 'on') {
        s.refuse(req, ErrorText.refused('CLIENT REPLY', 'the proxy matches every request to its reply'));
        return;
      }
      // (The client is authenticated here, so its connection is, or will be before this command
      // runs, named for the fence.)
      if (s.ctx.fence !== null && state.clientName(s, req)) return;
      if (clientTracking(s, req)) return;
      if (req.argc >= 2 && argLower(req, 1) === 'setinfo') {
        // Kept for a phase switch to replay (carry.ts); the server knows only these two.
        const attr = req.argc === 4 ? argLower(req, 2) : '';
        if (attr === 'lib-name' || attr === 'lib-ver') s.conn.clientInfo.set(attr, Buffer.from(req.raw));
        if (s.clientInfo(req)) return;
      }
      return s.forwardPlain(req);
    case 'keys':
    case 'scan':
    case 'dbsize':
    case 'randomkey':
    case 'info':
    case 'flushdb':
    case 'flushall':
    case 'swapdb':
      return keyspaceWide(s, req);
    case 'move':
      if (routeByScope(s, req, c)) return;
      return gateMove(s, req, c.keys);
    case 'copy':
      if (routeByScope(s, req, c)) return;
      return gateCopy(s, req, c.keys);
    case 'sort':
    case 'sort_ro':
      if (routeByScope(s, req, c)) return;
      return gateSort(s, req, c.keys);
    default:
      if (SUBSCRIBE_FAMILY.has(name)) return s.pubsub.subscribe(req);
      // A canary migration: keys out of its scope are served by the old server (scope-route.ts).
      if (routeByScope(s, req, c)) return;
      return gate(s, req, c.keys);
  }
}

/**
 * Commands that read or reshape whole dbs on both servers. They must see every earlier command
 * of this client done, and no later command may move a key before they are done (a move in
 * between would be counted twice, or read a db before it was swapped).
 */
function keyspaceWide(s: DispatchPort, req: Request): void {
  if (s.conn.inMulti) {
    // Once nothing moves any more (hold, drained) they run inside MULTI as on the server; so does
    // INFO, whose keyspace section EXEC's reply then gets summed over both servers.
    if (s.ctx.mover.drained) keyspace.queuedInMulti(s, req);
    else if (req.name === 'info') keyspace.infoInMulti(s, req);
    else s.refuse(req, ErrorText.notInMulti(req.name.toUpperCase()));
    return;
  }
  if (s.runAlone(req)) keyspace.handle(s, req);
}

/** Whether a request pins its client to its own connection (PINNING; unknown commands too). */
function pins(req: Request, c: Classified): boolean {
  const name = req.name;
  if (PINNING.has(name)) return true;
  if (name === 'client') return req.argc >= 2 && PINNING_CLIENT.has(argLower(req, 1));
  // A module's command rehome knows nothing about may keep connection state.
  return !c.known;
}
