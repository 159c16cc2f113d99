/**
 * Multi-key commands whose keys hash to several slots, split into one request per slot and their
 * replies merged into the one reply the client expects (as twemproxy and Envoy do):
 *
 *   MGET a b c        ──► MGET a c  (slot 1) ──► [va, vc] ─┐
 *                    └─► MGET b    (slot 2) ──► [vb]     ─┴─► [va, vb, vc]  (original order)
 *   DEL/UNLINK/EXISTS/TOUCH a b ──► one per slot ──► :n1, :n2 ──► :n1+n2
 *   MSET a 1 b 2      ──► MSET a 1 / MSET b 2 ──► +OK, +OK ──► +OK (else the first error)
 *
 * Not atomic across slots, as on a cluster client: each part runs atomically in its node. MSETNX
 * can't be split without losing its all-or-nothing meaning: it gets CROSSSLOT.
 */
import { encodeRequest, type Request, argBuf } from '../resp/request-framer.js';
import { arrayElements } from '../resp/reply-scanner.js';
import { keySlot } from './slot.js';

/** The commands split across slots, and how many arguments each key takes. */
export const SPLIT: ReadonlyMap<string, number> = new Map([
  ['mget', 1], ['del', 1], ['unlink', 1], ['exists', 1], ['touch', 1], ['mset', 2],
]);

/** One slot's part of a split request and where its keys sit in the original. */
export interface Part {
  slot: number;
  bytes: Buffer;
  /** Index (among keys) of each key of this part. */
  at: number[];
}

/** Splits a request of a SPLIT command into one part per slot. */
export function splitBySlot(req: Request, step: number): Part[] {
  const bySlot = new Map<number, { args: Buffer[]; at: number[] }>();
  for (let i = 1, k = 0; i + step - 1 < req.argc; i += step, k++) {
    const key = argBuf(req, i);
    const slot = keySlot(key.toString('latin1'));
    let g = bySlot.get(slot);
    if (g === undefined) bySlot.set(slot, (g = { args: [argBuf(req, 0)], at: [] }));
    for (let j = 0; j < step; j++) g.args.push(argBuf(req, i + j));
    g.at.push(k);
  }
  return [...bySlot].map(([slot, g]) => ({ slot, bytes: encodeRequest(g.args).raw, at: g.at }));
}

/** Merges the parts' replies (in `parts` order) into the reply of the whole command. */
export function mergeReplies(name: string, parts: readonly Part[], replies: readonly Buffer[]): Buffer {
  const err = replies.find((r) => r[0] === 0x2d);
  if (err !== undefined) return err;
  if (name === 'mset') return replies[0]!;
  if (name !== 'mget') {
    let n = 0;
    for (const r of replies) n += Number(r.toString('latin1', 1, r.length - 2));
    return Buffer.from(`:${n}\r\n`);
  }
  let total = 0;
  for (const p of parts) total += p.at.length;
  const out: Buffer[] = new Array<Buffer>(total + 1);
  out[0] = Buffer.from(`*${total}\r\n`);
  for (let i = 0; i < parts.length; i++) {
    const els = arrayElements(replies[i]!);
    if (els === null || els.length !== parts[i]!.at.length) return Buffer.from('-ERR rehome: unexpected MGET reply from a cluster node\r\n');
    parts[i]!.at.forEach((k, j) => (out[k + 1] = els[j]!));
  }
  return Buffer.concat(out);
}
