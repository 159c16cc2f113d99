/**
 * Decoding of whole replies into values, for the few places the proxy must look inside a reply
 * (merging KEYS/SCAN/DBSIZE/INFO across both instances). The data path never decodes.
 */
import RedisParser from 'redis-parser';

/** A decoded RESP2 value: bulk strings stay Buffers (binary safe), errors are ReplyErrorValue. */
export type RespValue = Buffer | number | null | ReplyErrorValue | RespValue[];

/** An error reply found inside a decoded value. */
export class ReplyErrorValue {
  constructor(readonly message: string) {}
}

/** Decodes exactly one complete reply. Throws if the bytes do not hold one. */
export function decodeReply(buf: Buffer): RespValue {
  let out: RespValue | undefined;
  let got = false;
  const parser = new RedisParser({
    returnBuffers: true,
    returnReply(reply: unknown) {
      out = reply as RespValue;
      got = true;
    },
    returnError(err: Error) {
      out = new ReplyErrorValue(err.message);
      got = true;
    },
    returnFatalError(err: Error) {
      throw err;
    },
  });
  parser.execute(buf);
  if (!got) throw new Error('incomplete reply');
  return out as RespValue;
}
