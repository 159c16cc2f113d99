/**
 * Scripts and functions that declare no keys, in a canary migration (docs/DESIGN.md "Scope",
 * "Scripts without keys"):
 *
 *   EVAL / EVALSHA / FCALL with numkeys 0       -> the new server, sent as EVAL_RO / EVALSHA_RO /
 *                                                  FCALL_RO: it may read, the server refuses any
 *                                                  write (-CROSSSCOPE to the client)
 *   SCRIPT LOAD|FLUSH, FUNCTION LOAD|DELETE|FLUSH|RESTORE
 *                                               -> the new server (the client's own connection),
 *                                                  then the old one (its old side), alone
 *
 * Why read-only: a script that declares no keys may touch any key, and no place is right for its
 * writes. On the new server it could create a key out of scope (the key would then be in two
 * places: DESIGN.md "Scope", point 2); on the old server it could write a key of the scope that
 * the migration treats as frozen there (rule 1). Its reads see the new server, as in a full
 * migrate, where a script's undeclared keys are read from the target.
 *
 * Why both servers for the script cache and libraries: a script with keys out of scope runs on the
 * old server and one with keys in scope on the new one, so an EVALSHA or FCALL must find its code
 * on either. The new server runs it first (rule 5: the client's own user accepted it there).
 */
import { ErrorText } from '../errors.js';
import { describeScope } from '../phase/scope.js';
import { encodeError } from '../resp/encode.js';
import { argBuf, argLower, encodeRequest, type Request } from '../resp/request-framer.js';
import { Entry } from './entry.js';
import type { OldSide } from './old-side.js';
import type { SessionPort } from './port.js';
import type { ScopeRouting } from './scope-routing.js';

/** What the scripts family needs of the session: running a command alone (dispatch.ts). */
interface ScriptPort extends SessionPort {
  runAlone(req: Request): boolean;
}

const READ_ONLY = new Map([
  ['eval', 'EVAL_RO'],
  ['evalsha', 'EVALSHA_RO'],
  ['fcall', 'FCALL_RO'],
]);

/** What the server answers a read-only script or function that writes (Redis 7, Valkey). */
const WRITE_REFUSED = /Write commands are not allowed from read-only scripts|with write flag using \*_ro command|unknown command/i;

const BOTH_SERVERS: Record<string, ReadonlySet<string>> = {
  script: new Set(['load', 'flush']),
  function: new Set(['load', 'delete', 'flush', 'restore']),
};

/**
 * A command without keys in a canary: true when handled here (a keyless script, or a script cache
 * or library change), false when it keeps its ordinary way (the new server).
 */
export function routeKeyless(s: ScriptPort, req: Request, r: ScopeRouting, oldSide: () => OldSide): boolean {
  const ro = READ_ONLY.get(req.name);
  if (ro !== undefined) {
    readOnly(s, req, r, ro);
    return true;
  }
  const subs = BOTH_SERVERS[req.name];
  if (subs === undefined || req.argc < 2 || !subs.has(argLower(req, 1)) || s.conn.inMulti) return false;
  if (!s.runAlone(req)) return true;
  onBoth(s, req, oldSide);
  return true;
}

function readOnly(s: SessionPort, req: Request, r: ScopeRouting, ro: string): void {
  const args: Buffer[] = [Buffer.from(ro)];
  for (let i = 1; i < req.argc; i++) args.push(argBuf(req, i));
  const e = new Entry(req);
  e.bytes = encodeRequest(args).raw;
  const scope = describeScope(r.scope);
  const name = req.name.toUpperCase();
  e.hook = (reply) => {
    if (reply[0] !== 0x2d || !WRITE_REFUSED.test(reply.toString('latin1', 0, Math.min(reply.length, 512)))) return reply;
    r.counters.crossScope++;
    return encodeError(ErrorText.scopeKeylessScript(name, scope));
  };
  s.enqueue(e);
}

function onBoth(s: SessionPort, req: Request, oldSide: () => OldSide): void {
  const raw = Buffer.from(req.raw); // the framer's chunk is not kept past dispatch
  const db = s.conn.db;
  const auth = s.conn.authRequest;
  const resp = s.conn.resp;
  const e = new Entry(req);
  e.local = true;
  e.pre = (async () => {
    const fromNew = await s.callAsClient(raw);
    if (isError(fromNew)) {
      e.reply = fromNew;
      return;
    }
    const fromOld = await oldSide().call(raw, db, auth, resp);
    e.reply = isError(fromOld) ? encodeError(ErrorText.scopeOldRefused(errorLine(fromOld))) : fromNew;
  })();
  s.enqueue(e);
}

function isError(reply: Buffer): boolean {
  return reply[0] === 0x2d || reply[0] === 0x21;
}

/** The text of an error reply ('-' line or RESP3 blob error), without its framing. */
function errorLine(reply: Buffer): string {
  const text = reply.toString('latin1');
  if (reply[0] === 0x2d) return text.slice(1).replace(/\r\n$/, '');
  return text.slice(text.indexOf('\r\n') + 2).replace(/\r\n$/, '');
}
