/**
 * Commands that change the state of the client's connection: SELECT, MULTI/EXEC/DISCARD, AUTH,
 * HELLO, RESET, CLIENT SETNAME/GETNAME. rehome's view of the connection (port.ts ConnectionView)
 * changes only on the server's reply (docs/DESIGN.md rule 6), and nothing after such a command is
 * dispatched before that reply: the next command's keys are moved in the db the server chose.
 */
import { encodeBulk } from '../resp/encode.js';
import { nullReply } from '../resp/resp3.js';
import { argBuf, argLower, argStr, encodeRequest, type Request } from '../resp/request-framer.js';
import { Entry } from './entry.js';
import { mergeInfoInExec } from './keyspace-plain.js';
import type { SessionPort } from './port.js';

/**
 * Makes `e` a connection-state command: dispatch holds what follows until the server answers,
 * and `apply` sees whether the server accepted it (a `+`, array or map reply).
 */
export function changesState(s: SessionPort, e: Entry, apply: (ok: boolean, reply: Buffer) => void): void {
  const conn = s.conn;
  conn.statePending++;
  const prior = e.hook;
  e.hook = (reply, en) => {
    conn.statePending--;
    const out = prior === null ? reply : prior(reply, en);
    apply(reply[0] === 0x2b || reply[0] === 0x2a || reply[0] === 0x25, reply);
    s.release();
    return out;
  };
}

/**
 * SELECT changes the db keys are moved in only once the server has run it. Inside MULTI its
 * +QUEUED says nothing about the outcome: the db is predicted with the server's own integer
 * rules and settled by EXEC's reply.
 */
export function select(s: SessionPort, req: Request): void {
  const conn = s.conn;
  const n = req.argc === 2 ? parseDbIndex(argStr(req, 1), s.ctx.databases) : null;
  if (conn.inMulti) conn.multiSelect = true;
  const e = new Entry(req);
  changesState(s, e, (ok) => {
    if (ok && n !== null) conn.db = n;
  });
  // A valid index, outside MULTI, before the client has a connection of its own: on that db's
  // shared lane (the same server answers it; the own connection selects the db when it opens).
  // An index the server may refuse goes to the own connection, for the server's own error.
  if (n !== null && !conn.inMulti) s.selectOnLane(e, n);
  s.enqueue(e);
}

export function multi(s: SessionPort, req: Request): void {
  const conn = s.conn;
  if (!conn.inMulti) {
    conn.inMulti = true;
    conn.multiDb = conn.db;
    conn.multiSelect = false;
    conn.multiQueued = 0;
    conn.multiInfoAt = [];
  }
  s.forwardPlain(req);
}

export function exec(s: SessionPort, req: Request): void {
  const conn = s.conn;
  const wasIn = conn.inMulti;
  const savedDb = conn.multiDb;
  conn.inMulti = false;
  const e = new Entry(req);
  if (wasIn && conn.multiInfoAt.length > 0) {
    mergeInfoInExec(s, e, conn.multiInfoAt);
    conn.multiInfoAt = [];
  }
  if (wasIn && conn.multiSelect) {
    conn.multiSelect = false;
    // EXEC aborted (EXECABORT, WATCH): the queued SELECTs did not run.
    changesState(s, e, (_ok, reply) => {
      if (reply[0] !== 0x2a || reply[1] === 0x2d) conn.db = savedDb;
    });
  }
  s.enqueue(e);
}

export function discard(s: SessionPort, req: Request): void {
  const conn = s.conn;
  if (conn.inMulti) {
    conn.inMulti = false;
    conn.db = conn.multiDb;
  }
  s.forwardPlain(req);
}

export function auth(s: SessionPort, req: Request): void {
  const e = new Entry(req);
  const raw = Buffer.from(req.raw); // a copy: raw is a view of the client's bytes
  changesState(s, e, (ok) => {
    if (!ok) return;
    s.conn.authRequest = raw;
    authenticated(s);
  });
  s.enqueue(e);
}

function authenticated(s: SessionPort): void {
  if (s.conn.authed) return;
  s.conn.authed = true;
  // A connection that could not be named before AUTH is named now.
  if (s.ctx.fence !== null) s.own.startFence();
}

export function hello(s: SessionPort, req: Request): void {
  // The protocol changes with the server's OK; a version it refuses (NOPROTO) changes nothing.
  const version = req.argc >= 2 ? argStr(req, 1) : '';
  const resp = version === '3' ? 3 : version === '2' ? 2 : null;
  let hasAuth = false;
  let setname = -1;
  for (let i = 2; i < req.argc; i++) {
    const a = argLower(req, i);
    if (a === 'auth') hasAuth = true;
    else if (a === 'setname' && i + 1 < req.argc) setname = i + 1;
  }
  const e = new Entry(req);
  let given: string | null | undefined;
  if (setname > 0 && s.ctx.fence !== null && validClientName(argStr(req, setname))) {
    // Keep the fenced prefix on the connection's name (see clientName()). An authenticated
    // client's connection is named for the fence before this runs (at once, or when the own
    // connection opens for it); an unauthenticated one gets the name with the fence after AUTH.
    const name = argStr(req, setname);
    given = name === '' ? null : name;
    if (s.conn.authed) {
      const args: Buffer[] = [];
      for (let i = 0; i < req.argc; i++) args.push(i === setname ? s.own.fence.nameRequestName(given) : argBuf(req, i));
      e.bytes = encodeRequest(args).raw;
    }
  }
  const raw = hasAuth ? Buffer.from(req.raw) : null;
  changesState(s, e, (ok) => {
    if (!ok) return;
    if (resp !== null) s.conn.resp = resp;
    if (given !== undefined) s.conn.clientName = given;
    if (raw !== null) {
      s.conn.authRequest = raw;
      authenticated(s);
    }
  });
  s.enqueue(e);
}

/**
 * RESET: rehome's view of the connection is reset once the server has run it, and only then is
 * the connection named for the fence again (RESET clears the name; a name set before it ran
 * would be cleared with it, and the phase switch's CLIENT KILL would miss the connection).
 */
export function reset(s: SessionPort, req: Request): void {
  const conn = s.conn;
  if (conn.subscribed || conn.monitoring) {
    // The stream ends when the target answers +RESET (pubsub.ts calls resetDone).
    conn.statePending++;
    s.sendRaw(req.raw);
    s.flushUp();
    return;
  }
  const e = new Entry(req);
  changesState(s, e, (ok) => {
    if (ok) resetDone(s);
  });
  s.enqueue(e);
}

/** The target answered +RESET: rehome's view of the connection starts over. */
export function resetDone(s: SessionPort): void {
  const conn = s.conn;
  conn.db = 0;
  conn.inMulti = false;
  conn.multiSelect = false;
  conn.subscribed = false;
  conn.monitoring = false;
  conn.authed = !s.ctx.targetAuthRequired;
  conn.authRequest = null;
  conn.clientInfo.clear();
  conn.carriable = true;
  conn.resp = 2;
  conn.pushSubscribed = false;
  conn.tracking = null;
  conn.cachingNext = null;
  if (s.ctx.fence !== null) {
    conn.named = false;
    conn.clientName = null;
    if (conn.authed) s.own.startFence();
  }
}

/**
 * CLIENT with phases: the connection's name belongs to rehome's fencing, so CLIENT SETNAME keeps
 * the fenced prefix (`rehome-e<epoch>-client.<name>`) and CLIENT GETNAME answers the client's own
 * name. Returns false for other CLIENT subcommands.
 */
export function clientName(s: SessionPort, req: Request): boolean {
  const sub = argLower(req, 1);
  if (sub === 'getname' && req.argc === 2) {
    const name = s.conn.clientName;
    s.localReply(req, name === null ? nullReply(s.conn.resp) : encodeBulk(Buffer.from(name, 'latin1')));
    return true;
  }
  if (sub !== 'setname' || req.argc !== 3) return false;
  const name = argStr(req, 2);
  const e = new Entry(req);
  if (validClientName(name)) {
    const given = name === '' ? null : name;
    e.bytes = s.own.fence.nameRequest(given);
    changesState(s, e, (ok) => {
      if (ok) s.conn.clientName = given;
    });
  }
  // An invalid name goes as it is: the server's own error, and the fenced name stays.
  s.enqueue(e);
  return true;
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
