/**
 * The gate (docs/DESIGN.md rule 2) in one place: a command is forwarded to the target only after every
 * key it touches is confirmed absent from the source. Every way keys are found goes through here:
 * the command table (first/last/step and key specs), COMMAND GETKEYS for what only the server can
 * tell, the dbs MOVE and COPY name, and SORT's patterns (which name keys nobody can know before it
 * runs). Keys starting with `__rehome:` are refused on every one of these paths. This is the only
 * caller of the mover.
 */
import { ErrorText, RehomeError } from '../errors.js';
import type { KeyRef } from '../migration/mover.js';
import { isReserved } from '../phase/phase.js';
import { argBuf, argLower, argStr, type Request } from '../resp/request-framer.js';
import { parseDbIndex } from './connection-state.js';
import { Entry } from './entry.js';
import type { SessionPort } from './port.js';

/**
 * Moves the keys of `req` (if not known absent), then forwards it. `keys` is the table's answer
 * (null: only the server can tell).
 */
export function gate(s: SessionPort, req: Request, keys: string[] | null): void {
  if (keys !== null && keys.some(isReserved)) {
    s.refuse(req, ErrorText.reservedKey());
    return;
  }
  if (keys === null) {
    const e = new Entry(req);
    const db = s.conn.db; // the db the command runs in, whatever SELECTs follow it
    e.pre = getKeys(s, req).then((ks) => {
      if (ks.some(isReserved)) throw new RehomeError('ERESERVED', ErrorText.reservedKey());
      return (ks.length > 0 ? s.ctx.mover.gate(db, ks) : null) ?? undefined;
    });
    s.enqueue(e);
    return;
  }
  if (keys.length === 0) {
    s.forwardPlain(req);
    return;
  }
  forwardAfter(s, req, s.ctx.mover.gate(s.conn.db, keys));
}

/** Forwards `req` once `moves` (null: nothing to move) have confirmed its keys absent. */
function forwardAfter(s: SessionPort, req: Request, moves: Promise<void> | null): void {
  if (moves === null) {
    s.forwardPlain(req);
    return;
  }
  const e = new Entry(req);
  e.pre = moves;
  s.enqueue(e);
}

/** MOVE key db: the key in the destination db must be moved first too (MOVE fails if it exists). */
export function gateMove(s: SessionPort, req: Request, keys: string[] | null): void {
  if (keys === null || keys.length === 0) {
    gate(s, req, keys);
    return;
  }
  const db = s.conn.db;
  const refs: KeyRef[] = [{ db, key: keys[0]! }];
  const n = req.argc === 3 ? parseDbIndex(argStr(req, 2), s.ctx.databases) : null;
  if (n !== null && n !== db) refs.push({ db: n, key: keys[0]! });
  gateRefs(s, req, refs);
}

/** COPY src dst [DB n]: the destination is in db n. */
export function gateCopy(s: SessionPort, req: Request, keys: string[] | null): void {
  if (keys === null || keys.length < 2) {
    gate(s, req, keys);
    return;
  }
  let dstDb = s.conn.db;
  for (let i = 3; i < req.argc - 1; i++) {
    if (argLower(req, i) === 'db') {
      const n = parseDbIndex(argStr(req, i + 1), s.ctx.databases);
      if (n !== null) dstDb = n;
    }
  }
  gateRefs(s, req, [
    { db: s.conn.db, key: keys[0]! },
    { db: dstDb, key: keys[1]! },
  ]);
}

function gateRefs(s: SessionPort, req: Request, refs: KeyRef[]): void {
  if (refs.some((r) => isReserved(r.key))) {
    s.refuse(req, ErrorText.reservedKey());
    return;
  }
  forwardAfter(s, req, s.ctx.mover.gateRefs(refs));
}

/**
 * SORT/SORT_RO: BY and GET patterns read keys named only while sorting, which cannot be moved
 * first; refused while keys move. Otherwise an ordinary keyed command.
 */
export function gateSort(s: SessionPort, req: Request, keys: string[] | null): void {
  if (!s.ctx.mover.drained && sortUsesPatterns(req)) {
    s.refuse(req, ErrorText.sortPattern());
    return;
  }
  gate(s, req, keys);
}

/** Asks the target which keys a command touches (COMMAND GETKEYS). */
export async function getKeys(s: SessionPort, req: Request): Promise<string[]> {
  const args: Buffer[] = [];
  for (let i = 0; i < req.argc; i++) args.push(argBuf(req, i));
  try {
    const r = (await s.ctx.target.db(0).callBuffer('COMMAND', 'GETKEYS', ...args)) as Buffer[];
    return r.map((b) => b.toString('latin1'));
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // "Invalid arguments" means the server found no key in them: nothing to move.
    if (/no key arguments|Invalid arguments specified|Invalid number of arguments/i.test(msg)) return [];
    if (/Invalid command specified/i.test(msg)) return [];
    // GETKEYS needs at least one argument after the name: a bare command names no key.
    if (req.argc < 2 && /wrong number of arguments for 'command\|getkeys'/i.test(msg)) return [];
    throw new RehomeError('EGETKEYS', ErrorText.getkeysFailed(req.name.toUpperCase(), msg));
  }
}

/**
 * Whether SORT names keys through BY/GET patterns. A pattern without '*' names no key (the
 * server looks nothing up: BY skips sorting, GET answers nil), and GET # is the element itself.
 */
export function sortUsesPatterns(req: Request): boolean {
  let j = 2;
  while (j < req.argc) {
    const opt = argLower(req, j);
    if (opt === 'asc' || opt === 'desc' || opt === 'alpha') j++;
    else if (opt === 'limit') j += 3;
    else if (opt === 'store') j += 2;
    else if (opt === 'by' || opt === 'get') {
      if (j + 1 < req.argc && argBuf(req, j + 1).includes(0x2a)) return true;
      j += 2;
    } else return false;
  }
  return false;
}
