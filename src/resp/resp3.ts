/**
 * The few RESP3 shapes the proxy needs to tell apart or make itself for a client that chose
 * RESP3 with HELLO 3: nulls, text replies (INFO is a verbatim string in RESP3), and push messages
 * (pub/sub and client-side caching invalidations), which arrive between replies and answer no
 * request.
 */
import { encodeBulk } from './encode.js';

/** The protocol a client speaks (HELLO's protover). */
export type Protocol = 2 | 3;

const NULL2 = Buffer.from('$-1\r\n');
const NULL3 = Buffer.from('_\r\n');

/** The null reply as the server sends it in `resp` (a nil bulk string in RESP2). */
export function nullReply(resp: Protocol): Buffer {
  return resp === 3 ? NULL3 : NULL2;
}

/** A bulk string (`$`) or a verbatim string (`=`, as RESP3 sends INFO's text). */
export function isText(reply: Buffer): boolean {
  return (reply[0] === 0x24 && reply[1] !== 0x2d) || reply[0] === 0x3d;
}

/** The text of an isText() reply (a verbatim string's format prefix, such as `txt:`, left out). */
export function textOf(reply: Buffer): Buffer {
  const eol = reply.indexOf(10);
  const body = reply.subarray(eol + 1, reply.length - 2);
  return reply[0] === 0x3d ? body.subarray(4) : body;
}

/** `text` in the shape of `model` (an isText() reply): a bulk string or a verbatim string. */
export function textLike(model: Buffer, text: Buffer): Buffer {
  if (model[0] !== 0x3d) return encodeBulk(text);
  const eol = model.indexOf(10);
  const format = model.subarray(eol + 1, eol + 5); // e.g. "txt:"
  return Buffer.concat([Buffer.from(`=${text.length + 4}\r\n`), format, text, Buffer.from('\r\n')]);
}

/**
 * The kind of a push message (its first element: `message`, `invalidate`, `subscribe`...), or
 * null when the push does not start with a short bulk or simple string.
 */
export function pushKind(push: Buffer): string | null {
  const eol = push.indexOf(10);
  if (eol < 0 || eol + 1 >= push.length) return null;
  const t = push[eol + 1];
  if (t === 0x2b) {
    const end = push.indexOf(13, eol + 2);
    return end < 0 ? null : push.toString('latin1', eol + 2, end);
  }
  if (t !== 0x24) return null;
  const lenEnd = push.indexOf(13, eol + 2);
  const len = Number(push.toString('latin1', eol + 2, lenEnd));
  if (!(len >= 0 && len <= 32)) return null;
  return push.toString('latin1', lenEnd + 2, lenEnd + 2 + len);
}

/** Pushes that acknowledge a (un)subscribe: in RESP3 they are that command's reply. */
export const SUBSCRIBE_ACKS = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe']);

/**
 * The invalidation a server sends after FLUSHALL/FLUSHDB: a null key list, which tells a
 * client to drop every key it has cached (sent by rehome when a client's tracking connection is
 * replaced at a phase switch).
 */
export const INVALIDATE_ALL = Buffer.from('>2\r\n$10\r\ninvalidate\r\n_\r\n');
