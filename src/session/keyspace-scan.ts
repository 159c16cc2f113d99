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
 *   client cursor 4c+4         -> C at c     (C ends -> 0); without a MATCH of the client's, C
 *                                            is one walk per pattern that came back, each with it
 *                                            as MATCH: c = cursor x patterns + pattern index
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
    sourceWalk(s, e, c === 0n ? 0n : (c - 1n) / 2n, rest);
  } else if (c % 4n === 2n) {
    targetWalk(s, e, (c - 2n) / 4n, rest);
  } else {
    returnWalk(s, e, (c - 4n) / 4n, rest);
  }
  s.enqueue(e);
}

/** Walk A on the source, after rule 5's check on the target. */
function sourceWalk(s: SessionPort, e: Entry, cursor: bigint, rest: Buffer[]): void {
  e.local = true;
  const db = s.conn.db;
  e.pre = sourceScan(s, db, cursor, rest).then(([next, found]) => {
    const out = next === 0n ? 2n : next * 2n + 1n;
    if (out > MAX_CURSOR) throw new RehomeError('ECURSOR', ErrorText.tooBigCursor());
    e.reply = page(out, found);
  });
}

/**
 * Walk C on the source: the keys that may have come back. Without a MATCH of the client's it walks
 * once per pattern of the scopes that came back, with that pattern as MATCH (the server leaves the
 * other keys out; `x` = cursor x patterns + index); else once, with the client's arguments. Either
 * way rehome keeps only keys out of scope that came back. Outside a canary (the phase changed under
 * a scan) it shows every key again, which is always safe (keys may repeat).
 */
function returnWalk(s: SessionPort, e: Entry, x: bigint, rest: Buffer[]): void {
  e.local = true;
  const db = s.conn.db;
  const r = s.ctx.scope;
  const pats = returnPatterns(r, db, rest);
  const n = BigInt(pats?.length ?? 1);
  const i = x % n;
  const args = pats === null ? rest : [...rest, Buffer.from('MATCH'), Buffer.from(pats[Number(i)]!, 'latin1')];
  e.pre = sourceScan(s, db, x / n, args).then(([next, found]) => {
    const out = next !== 0n ? (next * n + i) * 4n + 4n : i + 1n < n ? (i + 1n) * 4n + 4n : 0n;
    if (out > MAX_CURSOR) throw new RehomeError('ECURSOR', ErrorText.tooBigCursor());
    e.reply = page(out, r === null ? found : found.filter((k) => mayHaveComeBack(r, db, k.toString('latin1'))));
  });
}

/** One SCAN step of the source (rule 5's check on the target first), rehome's own keys left out. */
async function sourceScan(s: SessionPort, db: number, cursor: bigint, args: Buffer[]): Promise<[bigint, Buffer[]]> {
  let r: [Buffer, Buffer[]];
  try {
    await check(s, ['SCAN', 'rehome-check'], ErrorText.invalidCursor());
    r = (await s.ctx.source.db(db).callBuffer('SCAN', cursor.toString(), ...args)) as [Buffer, Buffer[]];
  } catch (err) {
    throw sourceError(err);
  }
  const found = s.ctx.hideSide === 'source' ? r[1].filter((k) => !isReservedBuf(k)) : r[1];
  return [BigInt(r[0].toString('latin1')), found];
}

function page(cursor: bigint, keys: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from('*2\r\n'), encodeBulk(cursor.toString()), encodeBulkArray(keys)]);
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
export function comesBack(r: ScopeRouting | null, db: number): boolean {
  return r !== null && r.cameBack.some((sc) => coversDb(sc, db));
}

function coversDb(sc: Scope, db: number): boolean {
  return sc.dbs.length === 0 || sc.dbs.includes(db);
}

/**
 * The patterns walk C passes as MATCH, one walk each: those of the scopes that came back (covering
 * db `db`), in a fixed order (they are fixed for the epoch). Null when the client gave its own
 * MATCH (the server can apply only one) or a scope that came back has no pattern (a whole db).
 */
function returnPatterns(r: ScopeRouting | null, db: number, rest: Buffer[]): string[] | null {
  if (r === null) return null;
  for (let j = 0; j + 1 < rest.length; j += 2) if (rest[j]!.toString('latin1').toLowerCase() === 'match') return null;
  const out = new Set<string>();
  for (const sc of r.cameBack) {
    if (!coversDb(sc, db)) continue;
    if (sc.patterns.length === 0) return null;
    for (const p of sc.patterns) out.add(p);
  }
  return out.size > 0 ? [...out].sort() : null;
}

/**
 * Walk C shows only keys out of scope that were coming back in this epoch (the rest A showed); in
 * an epoch where none of db `db` came back (the scan began in another), every key out of scope.
 */
function mayHaveComeBack(r: ScopeRouting, db: number, key: string): boolean {
  if (inScope(r.scope, db, key)) return false;
  return !comesBack(r, db) || r.cameBack.some((sc) => inScope(sc, db, key));
}
