/**
 * Commands that span the whole keyspace, merged across both instances (docs/DESIGN.md): the source is
 * read first, then the target through the client's own connection (so the client's db, pipeline
 * order and earlier writes apply). A key only moves source -> target, so this order sees every
 * key at least once; duplicates are removed.
 *
 *   KEYS       source KEYS, then target KEYS (then, in a canary while keys come back, source KEYS
 *              again); union
 *   DBSIZE     sum
 *   RANDOMKEY  one side, picked with probability proportional to its size
 *   SCAN       one cursor: the source, then the target, then (in a canary while keys come back
 *              after a narrowing) the source again for those keys: keyspace-scan.ts
 *   INFO       the Keyspace section summed per db
 *   FLUSHDB / FLUSHALL   applied to the source, then to the target
 *   SWAPDB     refused while keys move (it would put keys into a source db: docs/DESIGN.md rule 1)
 *
 * Counts are exact (docs/DESIGN.md): source, target, source again, retried while the source count
 * changed; keys only leave the source, so a stable source count brackets the target's read.
 *
 * Nothing is done in the source for a client that the target would refuse (docs/DESIGN.md rule 5): a
 * check on the client's own connection comes first. Where the command has a form the server
 * refuses after its ACL check but before running anything (FLUSHALL with a bad argument, SCAN with
 * a bad cursor, SWAPDB with bad indexes), that form is the check; DBSIZE and RANDOMKEY, which are
 * cheap, run on the target first; KEYS shows the source's half only once the target has answered
 * the client's own KEYS.
 */
import { ErrorText, RehomeError } from '../errors.js';
import { PHASE_KEY, RESERVED_PREFIX } from '../phase/phase.js';
import { decodeReply } from '../resp/decode.js';
import { encodeBulk, encodeBulkArray, encodeError } from '../resp/encode.js';
import { argBuf, type Request } from '../resp/request-framer.js';
import { isText, textLike, textOf } from '../resp/resp3.js';
import { Entry } from './entry.js';
import { comesBack, scan } from './keyspace-scan.js';
import {
  check, dropFromDb0, hiddenCount, hiddenRandomKey, intReply,
  isReservedReply, KEEP_PHASE_SCRIPT, keepingPhaseKey, mergeKeyspaceInfo, RANDOMKEY_SCRIPT, restArgs, sameCounts,
  sourceDbsize, sourceError, sourceKeyspace, wantsKeyspace,
} from './keyspace-hidden.js';
import { hiddenPassThrough } from './keyspace-plain.js';
import { drainedCount, dropMoveKeys, moveKeysIn } from './keyspace-moves.js';
import type { SessionPort } from './port.js';

export { infoInMulti, queuedInMulti } from './keyspace-plain.js';
export { wantsKeyspace } from './keyspace-hidden.js';

/** How often a count is read again while the source count keeps changing under it. */
const COUNT_ATTEMPTS = 100;

export function handle(s: SessionPort, req: Request): void {
  if (req.name === 'swapdb' && !s.ctx.mover.drained) {
    // Every process's known-absent cache would be wrong for both dbs (docs/DESIGN.md rule 1).
    s.localReply(req, encodeError(ErrorText.swapdbWhileMoving()));
    return;
  }
  if (s.ctx.mover.drained && req.name !== 'scan') {
    // The source is empty for good: pure pass-through (hiding rehome's phase key if it is there,
    // and the markers of proxy-side moves until they expire).
    if (s.ctx.hideSide === 'target') hiddenPassThrough(s, req);
    else if (drainedCount(s, req, req.name === 'info' && wantsKeyspace(req))) return;
    else s.forwardPlain(req);
    return;
  }
  switch (req.name) {
    case 'keys':
      return keys(s, req);
    case 'scan':
      return scan(s, req);
    case 'dbsize':
      return dbsize(s, req);
    case 'randomkey':
      return randomkey(s, req);
    case 'info':
      return info(s, req);
    case 'flushdb':
    case 'flushall':
      return flush(s, req);
    default:
      s.forwardPlain(req);
  }
}

function keys(s: SessionPort, req: Request): void {
  if (req.argc !== 2) return s.forwardPlain(req);
  const e = new Entry(req);
  let fromSource: Buffer[] = [];
  e.pre = s.ctx.source
    .db(s.conn.db)
    .callBuffer('KEYS', argBuf(req, 1))
    .then(
      (r) => {
        fromSource = r as Buffer[];
      },
      (err) => {
        throw sourceError(err);
      },
    );
  e.hook = (reply) => {
    if (reply[0] !== 0x2a) return reply;
    const fromTarget = decodeReply(reply) as Buffer[];
    return encodeBulkArray(union(fromSource, fromTarget));
  };
  const db = s.conn.db;
  if (comesBack(s.ctx.scope, db)) {
    // A canary while keys come back new -> old: the old server is read once more after the new
    // one, as SCAN walks it again (keyspace-scan.ts has the argument).
    const pattern = Buffer.from(argBuf(req, 1));
    e.post = async (merged) => {
      e.hook = null; // (the reply goes through complete() again)
      if (merged[0] !== 0x2a) return merged;
      const again = await s.ctx.source.db(db).callBuffer('KEYS', pattern).catch((err: unknown) => {
        throw sourceError(err);
      });
      return encodeBulkArray(union(decodeReply(merged) as Buffer[], again as Buffer[]));
    };
  }
  s.enqueue(e);
}

function union(a: Buffer[], b: Buffer[]): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  for (const list of [a, b]) {
    for (const k of list) {
      const id = k.toString('latin1');
      if (seen.has(id) || id.startsWith(RESERVED_PREFIX)) continue;
      seen.add(id);
      out.push(k);
    }
  }
  return out;
}

function dbsize(s: SessionPort, req: Request): void {
  if (req.argc !== 1) return s.forwardPlain(req);
  const e = new Entry(req);
  const db = s.conn.db;
  e.local = true;
  e.pre = (async () => {
    const hiddenInTarget = s.ctx.hideSide === 'target' && db === 0 ? await hiddenCount(s, 'target') : 0;
    intReply(await check(s, ['DBSIZE'], null));
    let n = 0;
    for (let i = 0; i < COUNT_ATTEMPTS; i++) {
      const before = await sourceDbsize(s, db);
      n = before + intReply(await s.callAsClient(req.raw)) - (await targetMoveKeys(s, db));
      if ((await sourceDbsize(s, db)) === before) break;
    }
    e.reply = Buffer.from(`:${n - hiddenInTarget}\r\n`);
  })();
  s.enqueue(e);
}

/** The target's move keys (markers) in `db`, read by rehome. */
async function targetMoveKeys(s: SessionPort, db: number): Promise<number> {
  return moveKeysIn(s.ctx.target.db(db), 'target').catch((err) => {
    throw targetError(err);
  });
}

function targetError(err: unknown): RehomeError {
  return new RehomeError('ETARGET', ErrorText.targetUnavailable((err as Error)?.message ?? String(err)));
}

function randomkey(s: SessionPort, req: Request): void {
  if (req.argc !== 1) return s.forwardPlain(req);
  const e = new Entry(req);
  const db = s.conn.db;
  e.local = true;
  e.pre = (async () => {
    const hideSource = s.ctx.hideSide === 'source';
    // The target's pick, from the client's own connection: rule 5's check, and the answer when
    // the target's side is picked.
    const fromTarget = await check(s, ['RANDOMKEY'], null);
    e.reply = fromTarget;
    if (s.ctx.hideSide === 'target' && isReservedReply(fromTarget)) {
      e.reply = await hiddenRandomKey(s, 'target', db);
    }
    const src = s.ctx.source.db(db);
    const ns = await sourceDbsize(s, db);
    if (ns === 0) return;
    const nt = await s.ctx.target.db(db).dbsize().catch(() => 0);
    if (Math.random() * (ns + nt) >= ns) return;
    let k: Buffer | null;
    try {
      k = hideSource
        ? ((await src.callBuffer('EVAL', RANDOMKEY_SCRIPT, 1, PHASE_KEY)) as Buffer | null)
        : ((await src.callBuffer('RANDOMKEY')) as Buffer | null);
    } catch (err) {
      throw sourceError(err);
    }
    if (k !== null) e.reply = encodeBulk(k);
  })();
  s.enqueue(e);
}

function info(s: SessionPort, req: Request): void {
  if (!wantsKeyspace(req)) return s.forwardPlain(req);
  const e = new Entry(req);
  e.local = true;
  e.pre = (async () => {
    const hiddenInTarget = s.ctx.hideSide === 'target' ? await hiddenCount(s, 'target') : 0;
    // Rule 5's check: INFO of a section no server has, which answers nothing for a user allowed
    // INFO. (The client's own INFO then runs between the two reads of the source.)
    let reply = await check(s, ['INFO', 'rehome-check'], null);
    let merged = '';
    for (let i = 0; i < COUNT_ATTEMPTS && isText(reply); i++) {
      const before = await sourceKeyspace(s);
      reply = await s.callAsClient(req.raw);
      if (!isText(reply)) break;
      const text = await dropMoveKeys(dropFromDb0(textOf(reply).toString('latin1'), hiddenInTarget), 'target', (n) => s.ctx.target.db(n)).catch((err) => {
        throw targetError(err);
      });
      merged = mergeKeyspaceInfo(text, before);
      if (sameCounts(await sourceKeyspace(s), before)) break;
    }
    // A RESP3 client gets INFO's text as the verbatim string the target sent.
    e.reply = isText(reply) ? textLike(reply, Buffer.from(merged, 'latin1')) : reply;
  })();
  s.enqueue(e);
}

function flush(s: SessionPort, req: Request): void {
  const e = new Entry(req);
  const db = s.conn.db;
  const args = restArgs(req, 1);
  const name = req.name.toUpperCase();
  const inDb = req.name === 'flushall' ? 0 : db;
  e.pre = (async () => {
    await check(s, [name, 'rehome-check'], 'ERR syntax error');
    const src = s.ctx.source.db(inDb);
    try {
      if (s.ctx.hideSide === 'source') await src.callBuffer('EVAL', KEEP_PHASE_SCRIPT, 1, PHASE_KEY, String(inDb), name, ...args);
      else await src.callBuffer(name, ...args);
    } catch (err) {
      throw sourceError(err);
    }
    // The target's half on the client's own connection (e itself), unless rehome's phase key is
    // there to keep: then by rehome, which the check above has already allowed.
    if (s.ctx.hideSide === 'target') {
      e.local = true;
      e.reply = await keepingPhaseKey(s, inDb, [name, ...args]);
    }
  })();
  s.enqueue(e);
}

