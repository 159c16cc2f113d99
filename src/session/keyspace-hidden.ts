/**
 * Reply surgery for keyspace-wide commands (keyspace.ts): rehome's phase key (`__rehome:phase`,
 * db 0 of the old server) left out of what clients see, the scripts that keep it through FLUSH
 * and SWAPDB, and the INFO keyspace text summed over both servers.
 */
import { ErrorText, RehomeError } from '../errors.js';
import { PHASE_KEY, RESERVED_PREFIX } from '../phase/phase.js';
import { decodeReply } from '../resp/decode.js';
import { encodeBulk, encodeBulkArray, encodeError } from '../resp/encode.js';
import { argBuf, argLower, encodeRequest, type Request } from '../resp/request-framer.js';
import { nullReply } from '../resp/resp3.js';
import { dropMoveKeys, visibleDbsize } from './keyspace-moves.js';
import type { SessionPort } from './port.js';

export function restArgs(req: Request, from: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = from; i < req.argc; i++) out.push(argBuf(req, i));
  return out;
}

/** How many of rehome's reserved keys (the phase key, db 0) a side holds. */
export async function hiddenCount(s: SessionPort, side: 'source' | 'target'): Promise<number> {
  return s.ctx[side].db(0).exists(PHASE_KEY);
}

/** DBSIZE of a source db, rehome's phase key (where the source holds it) and move keys left out. */
export async function sourceDbsize(s: SessionPort, db: number): Promise<number> {
  try {
    return await visibleDbsize(s.ctx.source.db(db), 'source', s.ctx.hideSide === 'source');
  } catch (err) {
    throw sourceError(err);
  }
}

/** The source's INFO keyspace text, rehome's phase key (where the source holds it) and move keys left out. */
export async function sourceKeyspace(s: SessionPort): Promise<string> {
  try {
    const hidden = s.ctx.hideSide === 'source' ? await hiddenCount(s, 'source') : 0;
    const text = dropFromDb0(await s.ctx.source.db(0).info('keyspace'), hidden);
    return await dropMoveKeys(text, 'source', (n) => s.ctx.source.db(n));
  } catch (err) {
    throw sourceError(err);
  }
}

export function isReservedReply(reply: Buffer): boolean {
  if (reply[0] !== 0x24 || reply[1] === 0x2d) return false;
  return isReservedBuf(decodeReply(reply) as Buffer);
}

/** RANDOMKEY of one side, run by rehome (after the client's check), never a reserved key. */
export async function hiddenRandomKey(s: SessionPort, side: 'source' | 'target', db: number): Promise<Buffer> {
  const k = (await s.ctx[side].db(db).callBuffer('EVAL', RANDOMKEY_SCRIPT, 1, PHASE_KEY)) as Buffer | null;
  return k === null ? nullReply(s.conn.resp) : encodeBulk(k);
}

/** Runs FLUSHALL, FLUSHDB or SWAPDB (in db `inDb`) on the target, keeping rehome's phase key. */
export async function keepingPhaseKey(s: SessionPort, inDb: number, cmd: Array<string | Buffer>): Promise<Buffer> {
  try {
    await s.ctx.target.db(0).callBuffer('EVAL', KEEP_PHASE_SCRIPT, 1, PHASE_KEY, String(inDb), ...cmd);
  } catch (err) {
    const e = err as Error & { name?: string };
    if (e && e.name === 'ReplyError') return encodeError(e.message);
    throw new RehomeError('ETARGET', ErrorText.targetUnavailable(e?.message ?? String(err)));
  }
  return Buffer.from('+OK\r\n');
}

// ---------------------------------------------------------------- rehome's phase key, hidden

/** DBSIZE without rehome's phase key. */
export const DBSIZE_SCRIPT = "return redis.call('DBSIZE') - redis.call('EXISTS', KEYS[1])";

/** RANDOMKEY that never returns one of rehome's keys. */
export const RANDOMKEY_SCRIPT = `
if redis.call('DBSIZE') - redis.call('EXISTS', KEYS[1]) <= 0 then return false end
for i = 1, 100 do
  local k = redis.call('RANDOMKEY')
  if not k or string.sub(k, 1, 9) ~= '${RESERVED_PREFIX}' then return k end
end
return false`;

/**
 * FLUSHDB, FLUSHALL or SWAPDB (ARGV[2..], run in db ARGV[1]) that keeps rehome's phase key in db 0:
 * the phase hash is saved first and put back afterwards, in one atomic script. Errors come back
 * as the command's own.
 */
export const KEEP_PHASE_SCRIPT = `
redis.call('SELECT', 0)
local h = redis.call('HGETALL', KEYS[1])
redis.call('SELECT', tonumber(ARGV[1]))
local args = {}
for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
local r = redis.pcall(unpack(args))
if type(r) == 'table' and r.err then return r end
if #h > 0 then
  if string.upper(ARGV[2]) == 'SWAPDB' then
    -- the key went to the other db of the swap: take it out of there
    local a, b = tonumber(ARGV[3]), tonumber(ARGV[4])
    if a == 0 and b ~= 0 then redis.call('SELECT', b); redis.call('DEL', KEYS[1]) end
    if b == 0 and a ~= 0 then redis.call('SELECT', a); redis.call('DEL', KEYS[1]) end
  end
  redis.call('SELECT', 0)
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(h))
end
return r`;

export function isReservedBuf(k: Buffer): boolean {
  return k.length >= RESERVED.length && k.subarray(0, RESERVED.length).equals(RESERVED);
}
const RESERVED = Buffer.from(RESERVED_PREFIX);

/** A RESP array of bulk strings without rehome's keys. */
export function hideReservedArray(el: Buffer): Buffer {
  const keys = decodeReply(el) as Buffer[] | null;
  if (!Array.isArray(keys) || !keys.some(isReservedBuf)) return el;
  return encodeBulkArray(keys.filter((k) => !isReservedBuf(k)));
}

/** INFO text with `n` keys (rehome's phase key) taken off db 0 of its Keyspace section. */
export function dropFromDb0(text: string, n: number): string {
  if (n <= 0) return text;
  return text.replace(/^db0:keys=(\d+),([^\r\n]*)(\r?\n)?/m, (_m, k: string, rest: string, nl: string | undefined) => {
    const left = Number(k) - n;
    return left > 0 ? `db0:keys=${left},${rest}${nl ?? ''}` : '';
  });
}

/**
 * The request to send instead, on a connection whose server holds the phase key: a script that
 * does the same and leaves the key out (or in place).
 */
export function hiddenRequest(s: SessionPort, req: Request): Buffer {
  const key = Buffer.from(PHASE_KEY);
  const ev = (script: string, ...args: Buffer[]) =>
    encodeRequest([Buffer.from('EVAL'), Buffer.from(script), Buffer.from('1'), key, ...args]).raw;
  switch (req.name) {
    case 'dbsize':
      return ev(DBSIZE_SCRIPT);
    case 'randomkey':
      return ev(RANDOMKEY_SCRIPT);
    case 'flushall':
      return ev(KEEP_PHASE_SCRIPT, Buffer.from('0'), Buffer.from('FLUSHALL'), ...restArgs(req, 1));
    case 'flushdb':
      return ev(KEEP_PHASE_SCRIPT, Buffer.from(String(s.conn.db)), Buffer.from('FLUSHDB'), ...restArgs(req, 1));
    case 'swapdb':
      return ev(KEEP_PHASE_SCRIPT, Buffer.from('0'), Buffer.from('SWAPDB'), ...restArgs(req, 1));
    default:
      return req.raw;
  }
}

// ---------------------------------------------------------------- INFO keyspace text

/** Whether two INFO keyspace texts hold the same key and expire counts per db. */
export function sameCounts(a: string, b: string): boolean {
  const x = parseKeyspaceLines(a);
  const y = parseKeyspaceLines(b);
  if (x.size !== y.size) return false;
  for (const [db, l] of x) {
    const m = y.get(db);
    if (m === undefined || m.keys !== l.keys || m.expires !== l.expires) return false;
  }
  return true;
}

interface DbLine {
  keys: number;
  expires: number;
  avgTtl: number;
}

function parseKeyspaceLines(text: string): Map<number, DbLine> {
  const m = new Map<number, DbLine>();
  const re = /^db(\d+):keys=(\d+),expires=(\d+),avg_ttl=(\d+)/gm;
  for (let r = re.exec(text); r !== null; r = re.exec(text)) {
    m.set(Number(r[1]), { keys: Number(r[2]), expires: Number(r[3]), avgTtl: Number(r[4]) });
  }
  return m;
}

/** Replaces the Keyspace section of a target INFO text with the sum of both instances. */
export function mergeKeyspaceInfo(targetText: string, sourceText: string): string {
  const start = targetText.indexOf('# Keyspace\r\n');
  if (start < 0) return targetText;
  const bodyStart = start + '# Keyspace\r\n'.length;
  let end = targetText.indexOf('\r\n#', bodyStart);
  end = end < 0 ? targetText.length : end + 2;
  const t = parseKeyspaceLines(targetText.slice(bodyStart, end));
  const src = parseKeyspaceLines(sourceText);
  const dbs = [...new Set([...t.keys(), ...src.keys()])].sort((a, b) => a - b);
  let body = '';
  for (const db of dbs) {
    const a = t.get(db) ?? { keys: 0, expires: 0, avgTtl: 0 };
    const b = src.get(db) ?? { keys: 0, expires: 0, avgTtl: 0 };
    const expires = a.expires + b.expires;
    const avg = expires === 0 ? 0 : Math.round((a.avgTtl * a.expires + b.avgTtl * b.expires) / expires);
    body += `db${db}:keys=${a.keys + b.keys},expires=${expires},avg_ttl=${avg}\r\n`;
  }
  const tail = targetText.slice(end);
  return targetText.slice(0, bodyStart) + body + (tail.length > 0 ? `\r\n${tail}` : '');
}

// ---------------------------------------------------------------- rule 5's check, replies

/** The text of an error reply (without '-' and CRLF), or null for any other reply. */
export function errorText(reply: Buffer): string | null {
  return reply[0] === 0x2d ? reply.toString('latin1', 1, reply.length - 2) : null;
}

/**
 * Rule 5's check: sends `args` on the client's own connection. A reply that is the error
 * `accepted` (the form's own bad argument) or no error means the target lets this client run the
 * command; any other error (NOPERM, NOAUTH...) is what the client gets.
 */
export async function check(s: SessionPort, args: ReadonlyArray<string | Buffer>, accepted: string | null): Promise<Buffer> {
  const reply = await s.callAsClient(encodeRequest(args.map((a) => (typeof a === 'string' ? Buffer.from(a) : a))).raw);
  const err = errorText(reply);
  if (err !== null && err !== accepted) throw new RehomeError('ETARGETREFUSED', err);
  return reply;
}

/** The integer of a `:n` reply, or the error it carries. */
export function intReply(reply: Buffer): number {
  const err = errorText(reply);
  if (err !== null) throw new RehomeError('ETARGETREFUSED', err);
  return Number(reply.toString('latin1', 1, reply.length - 2));
}

/** Turns a failure of a source read into the error the client sees. */
export function sourceError(err: unknown): RehomeError {
  if (err instanceof RehomeError) return err; // the target's refusal (check) or rehome's own
  const e = err as Error & { name?: string };
  if (e && e.name === 'ReplyError') return new RehomeError('ESOURCEREPLY', e.message);
  return new RehomeError('ESOURCE', ErrorText.sourceUnavailable(e?.message ?? String(err)));
}

const INFO_KEYSPACE_SECTIONS = new Set(['keyspace', 'all', 'everything', 'default']);

/** Whether an INFO request includes the Keyspace section. */
export function wantsKeyspace(req: Request): boolean {
  if (req.argc === 1) return true;
  for (let i = 1; i < req.argc; i++) if (INFO_KEYSPACE_SECTIONS.has(argLower(req, i))) return true;
  return false;
}
