/**
 * SCAN through rehome: one client cursor over up to three walks (docs/DESIGN.md "SCAN"):
 *
 *   A  the source (old server), every key
 *   B  the target (new server), through the client's own connection
 *   C  the source again, only keys that may have come back to it during A and B: a canary's keys
 *      out of scope that left it by a narrowing (scope-record.ts `returning`); only when such
 *      keys were coming back in this epoch
 *
 *   client cursor 0            -> A at 0
 *   client cursor 2c+1         -> A at c     (A ends -> client gets 2)
 *   client cursor 4c+2         -> B at c     (B ends -> 4 when C follows, else 0)
 *   client cursor 4c+4         -> C at c     (C ends -> 0)
 *
 * Why nothing present for the whole scan is missed: a key in scope moves only old -> new, so if it
 * left the old server before A reached it, it is on the new server for the whole of B. A key out
 * of scope and not coming back never leaves the old server: A sees it. A key coming back moves
 * only new -> old: if it left the new server before B reached it, it is on the old server before
 * C starts and stays there for the whole of C. (Within one epoch: the scope is fixed, and the
 * scopes coming back only shrink to none.) Keys may repeat, as SCAN allows.
 */
import { ErrorText, RehomeError } from '../errors.js';
import { inScope, type Scope } from '../phase/scope.js';
import { decodeReply } from '../resp/decode.js';
import { encodeBulk, encodeBulkArray, encodeError } from '../resp/encode.js';
import { argStr, encodeRequest, type Request } from '../resp/request-framer.js';
import { arrayElements } from '../resp/reply-scanner.js';
import { check, hideReservedArray, isReservedBuf, restArgs, sourceError } from './keyspace-hidden.js';
import { Entry } from './entry.js';
import type { SessionPort } from './port.js';
import type { ScopeRouting } from './scope-routing.js';

const MAX_CURSOR = (1n << 64n) - 1n;

export function scan(s: SessionPort, req: Request): void {
  if (req.argc < 2) return s.forwardPlain(req);
  if (s.ctx.mover.drained && s.ctx.hideSide === 'target') {
    // hold: the old server's own cursors, rehome's phase key left out of each page.
    const e = new Entry(req);
    e.hook = (reply) => {
      const els = arrayElements(reply);
      if (els === null || els.length !== 2) return reply;
      return Buffer.concat([Buffer.from('*2\r\n'), els[0]!, hideReservedArray(els[1]!)]);
    };
    s.enqueue(e);
    return;
  }
  const cur = argStr(req, 1);
  if (!/^\d{1,20}$/.test(cur) || BigInt(cur) > MAX_CURSOR) {
    s.localReply(req, encodeError(ErrorText.invalidCursor()));
    return;
  }
  const c = BigInt(cur);
  const rest = restArgs(req, 2);
  const e = new Entry(req);
  const onSource = c === 0n || c % 2n === 1n;
  if (s.ctx.mover.drained && onSource) {
    // Nothing left in the source: a walk that would start there starts on the target.
    targetWalk(s, e, 0n, rest);
  } else if (onSource) {
    sourceWalk(s, e, c === 0n ? 0n : (c - 1n) / 2n, rest, false);
  } else if (c % 4n === 2n) {
    targetWalk(s, e, (c - 2n) / 4n, rest);
  } else {
    sourceWalk(s, e, (c - 4n) / 4n, rest, true);
  }
  s.enqueue(e);
}

/**
 * Walk A or C on the source, after rule 5's check on the target. C outside a canary (the phase
 * changed under a scan) shows every key again, which is always safe.
 */
function sourceWalk(s: SessionPort, e: Entry, cursor: bigint, rest: Buffer[], walkC: boolean): void {
  const back = walkC ? s.ctx.scope : null;
  e.local = true;
  const db = s.conn.db;
  e.pre = check(s, ['SCAN', 'rehome-check'], ErrorText.invalidCursor())
    .then(() => s.ctx.source.db(db).callBuffer('SCAN', cursor.toString(), ...rest))
    .then(
      (r) => {
        const [nextBuf, found] = r as [Buffer, Buffer[]];
        const next = BigInt(nextBuf.toString('latin1'));
        const out = walkC ? (next === 0n ? 0n : next * 4n + 4n) : next === 0n ? 2n : next * 2n + 1n;
        if (out > MAX_CURSOR) throw new RehomeError('ECURSOR', ErrorText.tooBigCursor());
        let shown = s.ctx.hideSide === 'source' ? found.filter((k) => !isReservedBuf(k)) : found;
        if (back !== null) shown = shown.filter((k) => mayHaveComeBack(back, db, k.toString('latin1')));
        e.reply = Buffer.concat([Buffer.from('*2\r\n'), encodeBulk(out.toString()), encodeBulkArray(shown)]);
      },
      (err) => {
        throw sourceError(err);
      },
    );
}

/** Walk B: the SCAN goes to the target through the client's own connection, its cursor re-encoded. */
function targetWalk(s: SessionPort, e: Entry, cursor: bigint, rest: Buffer[]): void {
  const hide = s.ctx.hideSide === 'target';
  const db = s.conn.db;
  const thenC = !s.ctx.mover.drained && comesBack(s.ctx.scope, db);
  e.bytes = encodeRequest([Buffer.from('SCAN'), Buffer.from(cursor.toString()), ...rest]).raw;
  e.hook = (reply) => {
    const els = arrayElements(reply);
    if (els === null || els.length !== 2) return reply;
    const cursorVal = decodeReply(els[0]!) as Buffer;
    const next = BigInt(cursorVal.toString('latin1'));
    const out = next === 0n ? (thenC ? 4n : 0n) : next * 4n + 2n;
    if (out > MAX_CURSOR) return encodeError(ErrorText.tooBigCursor());
    const keysEl = hide ? hideReservedArray(els[1]!) : els[1]!;
    return Buffer.concat([Buffer.from('*2\r\n'), encodeBulk(out.toString()), keysEl]);
  };
}

/** Whether keys of db `db` were coming back to the old server at some time in this epoch. */
function comesBack(r: ScopeRouting | null, db: number): boolean {
  return r !== null && r.cameBack.some((sc) => coversDb(sc, db));
}

function coversDb(sc: Scope, db: number): boolean {
  return sc.dbs.length === 0 || sc.dbs.includes(db);
}

/** Walk C shows only keys out of scope that were coming back in this epoch (the rest A showed). */
function mayHaveComeBack(r: ScopeRouting, db: number, key: string): boolean {
  return !inScope(r.scope, db, key) && r.cameBack.some((sc) => inScope(sc, db, key));
}
