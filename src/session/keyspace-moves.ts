/**
 * Counts through rehome without the proxy-side move's own keys (docs/DESIGN.md "Commands that span
 * the whole keyspace"): a claim key stands for its K and is counted as K; its record in the source
 * and the publish-once marker in the target are rehome's. The move scripts keep a per-db count of
 * each (migration/move-keys.ts RECORDS_COUNT, MARKERS_COUNT), so leaving them out costs one read
 * per db instead of a scan. Markers outlive the drain by the late-publish window (they expire
 * then), so counts on the target leave them out after the drain too.
 */
import type { Redis } from 'ioredis';
import { MARKERS_COUNT, RECORDS_COUNT } from '../migration/move-keys.js';
import { PHASE_KEY } from '../phase/phase.js';
import { isText, textLike, textOf } from '../resp/resp3.js';
import type { Request } from '../resp/request-framer.js';
import { Entry } from './entry.js';
import type { SessionPort } from './port.js';

const COUNT_OF = { source: RECORDS_COUNT, target: MARKERS_COUNT } as const;

/** Rehome's move keys in one db of one side: the counted keys and the count key itself. */
export async function moveKeysIn(c: Redis, side: 'source' | 'target'): Promise<number> {
  const r = await c.multi().get(COUNT_OF[side]).exists(COUNT_OF[side]).exec();
  if (r === null) return 0;
  for (const [err] of r) if (err) throw err;
  return Math.max(0, Number(r[0]![1] ?? 0)) + Number(r[1]![1]);
}

/**
 * DBSIZE of a db with rehome's keys left out, in one transaction: the phase key (when `phase`)
 * and the move keys.
 */
export async function visibleDbsize(c: Redis, side: 'source' | 'target', phase: boolean): Promise<number> {
  const m = c.multi().dbsize().get(COUNT_OF[side]).exists(COUNT_OF[side]);
  if (phase) m.exists(PHASE_KEY);
  const r = await m.exec();
  if (r === null) throw new Error('the DBSIZE transaction was aborted');
  for (const [err] of r) if (err) throw err;
  const hidden = Math.max(0, Number(r[1]![1] ?? 0)) + Number(r[2]![1]) + (phase ? Number(r[3]![1]) : 0);
  return Number(r[0]![1]) - hidden;
}

/** INFO text with each db's move keys taken off its Keyspace line (`db(n)`: a connection to db n). */
export async function dropMoveKeys(text: string, side: 'source' | 'target', db: (n: number) => Redis): Promise<string> {
  const dbs = [...text.matchAll(/^db(\d+):keys=/gm)].map((m) => Number(m[1]));
  if (dbs.length === 0) return text;
  const hidden = await Promise.all(dbs.map((n) => moveKeysIn(db(n), side)));
  return text.replace(/^db(\d+):keys=(\d+),([^\r\n]*)(\r?\n)?/gm, (line, n: string, k: string, rest: string, nl: string | undefined) => {
    const i = dbs.indexOf(Number(n));
    const h = i < 0 ? 0 : hidden[i]!;
    if (h === 0) return line;
    const left = Number(k) - h;
    return left > 0 ? `db${n}:keys=${left},${rest}${nl ?? ''}` : '';
  });
}

/**
 * Once drained, DBSIZE and INFO (with its keyspace section) go to the target as they are
 * (keyspace-plain.ts), with the markers that are still there (until they expire) left out.
 * Returns false for any other request, or when no proxy-side move can have left markers.
 */
export function drainedCount(s: SessionPort, req: Request, keyspaceInfo: boolean): boolean {
  if (s.ctx.mover.proxy === null) return false;
  const e = new Entry(req);
  const target = s.ctx.target;
  if (req.name === 'dbsize' && req.argc === 1) {
    const db = s.conn.db;
    let hidden = 0;
    e.pre = moveKeysIn(target.db(db), 'target').then((h) => void (hidden = h), () => undefined);
    e.hook = (reply) => (reply[0] === 0x3a && hidden > 0 ? Buffer.from(`:${Number(reply.toString('latin1', 1, reply.length - 2)) - hidden}\r\n`) : reply);
  } else if (req.name === 'info' && keyspaceInfo) {
    e.local = true;
    e.pre = (async () => {
      const reply = await s.callAsClient(req.raw);
      e.reply = reply;
      if (!isText(reply)) return;
      const text = textOf(reply).toString('latin1');
      // The counts unreadable (the target just went away): the server's own answer.
      const shown = await dropMoveKeys(text, 'target', (n) => target.db(n)).catch(() => text);
      // A RESP3 client gets it as the verbatim string the target sent.
      e.reply = textLike(reply, Buffer.from(shown, 'latin1'));
    })();
  } else {
    return false;
  }
  s.enqueue(e);
  return true;
}
