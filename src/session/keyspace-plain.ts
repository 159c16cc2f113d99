/**
 * Keyspace-wide commands where the server's own answer is the right one: in hold (rehome's phase
 * key left out), once drained, and inside MULTI (where INFO's keyspace section is summed over
 * both servers after the EXEC while keys move).
 */
import type { Request } from '../resp/request-framer.js';
import { arrayElements } from '../resp/reply-scanner.js';
import { isText, textLike, textOf } from '../resp/resp3.js';
import { Entry } from './entry.js';
import {
  check, dropFromDb0, hiddenCount, hiddenRandomKey, hiddenRequest, hideReservedArray, isReservedReply, keepingPhaseKey,
  mergeKeyspaceInfo, restArgs, sameCounts, sourceKeyspace, wantsKeyspace,
} from './keyspace-hidden.js';
import type { SessionPort } from './port.js';

/**
 * Pass-through to a server that holds the phase key (hold phase): the same commands, key hidden.
 * What rehome runs itself to keep the key (scripts) comes after the client's own check.
 */
export function hiddenPassThrough(s: SessionPort, req: Request): void {
  const e = new Entry(req);
  const db = s.conn.db;
  switch (req.name) {
    case 'keys':
      if (req.argc !== 2) return s.forwardPlain(req);
      e.hook = (reply) => (reply[0] === 0x2a ? hideReservedArray(reply) : reply);
      break;
    case 'dbsize': {
      if (req.argc !== 1) return s.forwardPlain(req);
      let hidden = 0;
      if (db === 0) {
        e.pre = hiddenCount(s, 'target').then((h) => {
          hidden = h;
        });
      }
      e.hook = (reply) => (reply[0] === 0x3a ? Buffer.from(`:${Number(reply.toString('latin1', 1, reply.length - 2)) - hidden}\r\n`) : reply);
      break;
    }
    case 'randomkey':
      if (req.argc !== 1) return s.forwardPlain(req);
      e.local = true;
      e.pre = check(s, ['RANDOMKEY'], null).then(async (r) => {
        e.reply = isReservedReply(r) ? await hiddenRandomKey(s, 'target', db) : r;
      });
      break;
    case 'flushall':
    case 'flushdb': {
      const name = req.name.toUpperCase();
      e.local = true;
      e.pre = check(s, [name, 'rehome-check'], 'ERR syntax error').then(async () => {
        e.reply = await keepingPhaseKey(s, req.name === 'flushall' ? 0 : db, [name, ...restArgs(req, 1)]);
      });
      break;
    }
    case 'swapdb': {
      if (req.argc !== 3) return s.forwardPlain(req);
      e.local = true;
      e.pre = check(s, ['SWAPDB', 'rehome-check', 'rehome-check'], 'ERR invalid first DB index').then(async () => {
        e.reply = await keepingPhaseKey(s, 0, ['SWAPDB', ...restArgs(req, 1)]);
      });
      break;
    }
    case 'info': {
      if (!wantsKeyspace(req)) return s.forwardPlain(req);
      let hidden = 0;
      e.pre = hiddenCount(s, 'target').then(
        (h) => {
          hidden = h;
        },
        () => undefined,
      );
      e.hook = (reply) => {
        if (!isText(reply)) return reply;
        return textLike(reply, Buffer.from(dropFromDb0(textOf(reply).toString('latin1'), hidden), 'latin1'));
      };
      break;
    }
    default:
      return s.forwardPlain(req);
  }
  s.enqueue(e);
}

/**
 * A keyspace-wide command queued inside MULTI while nothing moves (hold, drained): forwarded, with
 * the phase-key-hiding form of DBSIZE, RANDOMKEY, FLUSHDB, FLUSHALL and SWAPDB where the key is
 * on this server. (KEYS, SCAN and INFO inside MULTI show the server's own answer.)
 */
export function queuedInMulti(s: SessionPort, req: Request): void {
  const hide =
    s.ctx.hideSide === 'target' &&
    (req.name === 'flushall' || req.name === 'flushdb' ||
      ((req.name === 'dbsize' || req.name === 'randomkey') && req.argc === 1) ||
      (req.name === 'swapdb' && req.argc === 3));
  if (!hide) return s.forwardPlain(req);
  const e = new Entry(req);
  e.bytes = hiddenRequest(s, req);
  s.enqueue(e);
}

/**
 * INFO queued inside MULTI while keys move: it runs on the target with the transaction; when it
 * includes the keyspace section, the EXEC reply gets it summed over both servers
 * (mergeInfoInExec).
 */
export function infoInMulti(s: SessionPort, req: Request): void {
  if (wantsKeyspace(req)) s.conn.multiInfoAt.push(s.conn.multiQueued - 1);
  s.forwardPlain(req);
}

/**
 * The EXEC of a transaction holding INFO with its keyspace section: the source's keyspace is read
 * before the EXEC is sent and again after its reply, as for INFO alone (exact when the two agree;
 * an EXEC cannot be run again, so when a key left the source in between the later read is used).
 */
export function mergeInfoInExec(s: SessionPort, e: Entry, at: readonly number[]): void {
  let before = '';
  e.pre = sourceKeyspace(s).then((r) => {
    before = r;
  });
  e.post = async (reply) => {
    const els = arrayElements(reply);
    if (els === null) return reply; // aborted
    const after = await sourceKeyspace(s).catch(() => before);
    const src = sameCounts(before, after) ? before : after;
    const hidden = s.ctx.hideSide === 'target' ? await hiddenCount(s, 'target') : 0;
    const parts: Buffer[] = [Buffer.from(`*${els.length}\r\n`)];
    els.forEach((el, i) => {
      if (!at.includes(i) || !isText(el)) {
        parts.push(el);
        return;
      }
      const text = dropFromDb0(textOf(el).toString('latin1'), hidden);
      parts.push(textLike(el, Buffer.from(mergeKeyspaceInfo(text, src), 'latin1')));
    });
    return Buffer.concat(parts);
  };
}
