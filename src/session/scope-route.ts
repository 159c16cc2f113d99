/**
 * Routing by scope in a canary migration (docs/DESIGN.md "Scope"), decided per command before the
 * gate:
 *
 *   keys all in scope               -> the gate (the migrate rules: moved, then the new server)
 *   keys all out of scope           -> the old server, as in hold (old-side.ts); a key that left
 *                                      the scope by a narrowing may still be on the new server:
 *                                      the reverse mover brings it home first (the return rules)
 *   keys on both sides              -> -CROSSSCOPE naming one key of each side and the scope
 *   no keys, keyspace-wide commands -> unchanged (their merged meaning over both servers), but
 *                                      scripts without keys run read-only and script/library
 *                                      changes go to both servers (scope-scripts.ts)
 *
 * Why no key is served from two places: a key's side depends only on its name, its db and the
 * scope in force, and the scope changes only with the epoch (a fenced switch), so every process
 * of an epoch routes a key the same way. Out-of-scope keys are never written to the new server
 * (nothing routes them there), so while keys move old -> new only in-scope keys move.
 *
 * A command out of scope runs alone (every earlier reply of the client is in first, nothing later
 * starts before it ends): the client's commands on the two servers stay in the order sent. Inside
 * MULTI (and for WATCH), which run on the new server, keys out of scope are refused.
 */
import type { Classified } from '../commands/table.js';
import { ErrorText, RehomeError } from '../errors.js';
import type { KeyRef } from '../migration/mover.js';
import { classify, describeScope, inScope, type ScopedKey } from '../phase/scope.js';
import { isReserved } from '../phase/phase.js';
import { argLower, argStr, type Request } from '../resp/request-framer.js';
import { parseDbIndex } from './connection-state.js';
import { Entry } from './entry.js';
import { getKeys, sortUsesPatterns } from './gate.js';
import { OldSide } from './old-side.js';
import type { SessionHandle, SessionPort } from './port.js';
import type { ScopeRouting } from './scope-routing.js';
import { routeKeyless } from './scope-scripts.js';

/** What routing needs of the session besides the port: running a command alone (dispatch.ts). */
interface RoutePort extends SessionPort {
  runAlone(req: Request): boolean;
}

/** Each client's connection to the old server; closed with the session (closeOldSide). */
const sides = new WeakMap<object, OldSide>();

function sideOf(s: SessionPort, r: ScopeRouting): OldSide {
  let side = sides.get(s);
  if (side === undefined) {
    side = new OldSide(r.old, s.ctx.fence, r.connectTimeoutMs);
    sides.set(s, side);
  }
  return side;
}

/** The session is over: its connection to the old server closes. */
export function closeOldSide(s: SessionHandle): void {
  sides.get(s)?.close();
  sides.delete(s);
}

/** Whether a key out of scope may be on the new server still (it left the scope by a narrowing). */
function returning(r: ScopeRouting, k: ScopedKey): boolean {
  return r.back !== null && r.returning.some((sc) => inScope(sc, k.db, k.key));
}

/**
 * Routes a keyed command by the scope; true when handled here (refused, or sent to the old
 * server), false when it goes on to the gate. `c` is the table's answer.
 */
export function routeByScope(s: RoutePort, req: Request, c: Classified): boolean {
  const r = s.ctx.scope;
  if (r === null) return false;
  const keys = c.keys;
  if (keys === null) return routeUnknown(s, req, r);
  if (keys.length === 0) return routeKeyless(s, req, r, () => sideOf(s, r));
  // (The gate refuses these: reserved keys, and SORT's patterns, which name keys on either side.)
  if (keys.some(isReserved)) return false;
  if ((req.name === 'sort' || req.name === 'sort_ro') && sortUsesPatterns(req)) return false;
  const refs = keyRefs(s, req, keys);
  const { side, pair } = classify(r.scope, refs);
  if (side === 'in') {
    r.counters.inScope++;
    s.markSide({ counters: r.counters, inScope: true, t0: performance.now() });
    return false;
  }
  if (side === 'both') {
    r.counters.crossScope++;
    s.refuse(req, ErrorText.crossScope(pair![0].key, pair![1].key, describeScope(r.scope)));
    return true;
  }
  if (s.conn.tracking !== null) {
    // Its reads would be tracked by the new server only: the old one's invalidations never come.
    r.counters.crossScope++;
    s.refuse(req, ErrorText.scopeTracking(refs[0]!.key, describeScope(r.scope)));
    return true;
  }
  if (s.conn.inMulti || req.name === 'watch') {
    r.counters.crossScope++;
    s.refuse(req, ErrorText.scopeInMulti(req.name.toUpperCase(), refs[0]!.key, describeScope(r.scope)));
    return true;
  }
  if (!s.runAlone(req)) return true;
  r.counters.outScope++;
  const e = new Entry(req);
  e.side = { counters: r.counters, inScope: false, t0: performance.now() };
  e.local = true;
  e.pre = runOnOld(s, r, req, refs, e);
  s.enqueue(e);
  return true;
}

/**
 * Keys only the server can name (COMMAND GETKEYS): asked first, then routed. Alone, so that a
 * command that turns out to be out of scope keeps the client's order; inside MULTI (no running
 * alone there) keys out of scope are refused as above.
 */
function routeUnknown(s: RoutePort, req: Request, r: ScopeRouting): boolean {
  if (!s.conn.inMulti && !s.runAlone(req)) return true;
  const e = new Entry(req);
  const t0 = performance.now();
  const db = s.conn.db;
  const multi = s.conn.inMulti || req.name === 'watch';
  e.pre = getKeys(s, req).then(async (ks) => {
    if (ks.some(isReserved)) throw new RehomeError('ERESERVED', ErrorText.reservedKey());
    if (ks.length === 0) return;
    const refs = ks.map((key) => ({ db, key }));
    const { side, pair } = classify(r.scope, refs);
    if (side === 'in') {
      r.counters.inScope++;
      e.side = { counters: r.counters, inScope: true, t0 };
      await (s.ctx.mover.gate(db, ks) ?? undefined);
      return;
    }
    r.counters.crossScope++;
    if (side === 'both') throw new RehomeError('ECROSSSCOPE', ErrorText.crossScope(pair![0].key, pair![1].key, describeScope(r.scope)));
    if (multi) throw new RehomeError('ECROSSSCOPE', ErrorText.scopeInMulti(req.name.toUpperCase(), ks[0]!, describeScope(r.scope)));
    if (s.conn.tracking !== null) throw new RehomeError('ECROSSSCOPE', ErrorText.scopeTracking(ks[0]!, describeScope(r.scope)));
    r.counters.crossScope--;
    r.counters.outScope++;
    e.side = { counters: r.counters, inScope: false, t0 };
    e.local = true;
    await runOnOld(s, r, req, refs, e);
  });
  s.enqueue(e);
  return true;
}

/** Brings keys that left the scope home first (the return rules), then runs `req` on the old server. */
async function runOnOld(s: SessionPort, r: ScopeRouting, req: Request, refs: ScopedKey[], e: Entry): Promise<void> {
  const raw = Buffer.from(req.raw); // the framer's chunk is not kept past dispatch
  const db = s.conn.db;
  const auth = s.conn.authRequest;
  const resp = s.conn.resp;
  const back = refs.filter((k) => returning(r, k));
  if (back.length > 0) {
    const moves = r.back!.gateRefs(back as KeyRef[]);
    if (moves !== null) {
      r.counters.returnedByTouch += back.length;
      await moves;
    }
  }
  e.reply = await sideOf(s, r).call(raw, db, auth, resp);
}

/** A command's keys with their dbs: MOVE's key in its destination db, COPY's destination in DB n. */
function keyRefs(s: SessionPort, req: Request, keys: string[]): ScopedKey[] {
  const db = s.conn.db;
  const refs = keys.map((key) => ({ db, key }));
  if (req.name === 'move' && req.argc === 3) {
    const n = parseDbIndex(argStr(req, 2), s.ctx.databases);
    if (n !== null && n !== db) refs.push({ db: n, key: keys[0]! });
  } else if (req.name === 'copy' && keys.length >= 2) {
    for (let i = 3; i < req.argc - 1; i++) {
      if (argLower(req, i) === 'db') {
        const n = parseDbIndex(argStr(req, i + 1), s.ctx.databases);
        if (n !== null) refs[1] = { db: n, key: keys[1]! };
      }
    }
  }
  return refs;
}
