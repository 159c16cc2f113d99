/**
 * The command table, built from the target's own `COMMAND` reply, and key extraction from it.
 *
 * Key positions follow the server's rules exactly:
 * - commands without movable keys: the (first, last, step) triple;
 * - commands with movable keys: the key specs (begin_search index|keyword, find_keys range|keynum),
 *   interpreted as the server does, when every spec is complete;
 * - otherwise (unknown or incomplete specs, servers without key specs): COMMAND GETKEYS on the
 *   target, which runs the server's own key-finding code. The caller does that round trip.
 */
import type { Request } from '../resp/request-framer.js';
import { argLower, argStr } from '../resp/request-framer.js';

interface BeginSearch {
  kind: 'index' | 'keyword';
  index: number;
  keyword: string;
  startfrom: number;
}

interface FindKeys {
  kind: 'range' | 'keynum';
  lastkey: number;
  keystep: number;
  limit: number;
  keynumidx: number;
  firstkey: number;
}

interface KeySpec {
  begin: BeginSearch;
  find: FindKeys;
  notKey: boolean;
}

const enum KeyMode {
  None,
  Triple,
  Specs,
  GetKeys,
}

/** One command (or subcommand) of the server's table. */
export interface CommandInfo {
  name: string;
  arity: number;
  flags: ReadonlySet<string>;
  first: number;
  last: number;
  step: number;
  mode: KeyMode;
  specs: KeySpec[];
  subcommands: Map<string, CommandInfo> | null;
  /** Whether the command may run on a shared connection to the target (see shareKind). */
  share: ShareKind;
}

/**
 * Whether a command may run on a connection shared by many clients (src/session/shared-lane.ts).
 * Only commands that name their keys and carry no connection state: no transaction, script,
 * pub/sub, blocking, connection or admin command, and no read-only command of the server's @slow
 * category (LRANGE, HGETALL, SMEMBERS...: replies that can be large would hold up every other
 * client's replies behind them on the shared connection).
 */
export const enum ShareKind {
  No = 0,
  Read = 1,
  /** A write: the client's later WAIT must cover it (see WAIT_PRELUDE in src/session/send-queue.ts). */
  Write = 2,
}

const UNSHAREABLE_CATEGORIES = [
  '@connection', '@transaction', '@scripting', '@pubsub', '@blocking', '@admin', '@dangerous',
];
const UNSHAREABLE_FLAGS = ['blocking', 'pubsub', 'noscript', 'no_multi', 'admin', 'movablekeys'];

function shareKindOf(mode: KeyMode, flags: ReadonlySet<string>, categories: ReadonlySet<string>): ShareKind {
  if (mode !== KeyMode.Triple && mode !== KeyMode.Specs) return ShareKind.No;
  if (UNSHAREABLE_CATEGORIES.some((c) => categories.has(c))) return ShareKind.No;
  if (UNSHAREABLE_FLAGS.some((f) => flags.has(f))) return ShareKind.No;
  const write = flags.has('write');
  if (!write && categories.has('@slow')) return ShareKind.No;
  return write ? ShareKind.Write : ShareKind.Read;
}

/** What the table says of one request (CommandTable.classify). */
export interface Classified {
  /** In the table: a command rehome knows (an unknown one may be a module's, with state). */
  known: boolean;
  info: CommandInfo | undefined;
  /** The keys, [] for none, or NEEDS_GETKEYS. */
  keys: string[] | null;
  share: ShareKind;
}

/**
 * A command's ShareKind. Unknown commands may not share, nor containers (OBJECT, XINFO...) named
 * without a known subcommand (the server's error).
 */
function shareOf(info: CommandInfo | undefined): ShareKind {
  return info === undefined || info.subcommands !== null ? ShareKind.No : info.share;
}

/** Sentinel: the keys can only be found with COMMAND GETKEYS. */
export const NEEDS_GETKEYS = null;

const EMPTY: string[] = [];

/** The server's command table, with exact key extraction. */
export class CommandTable {
  private readonly byName = new Map<string, CommandInfo>();

  constructor(commandReply: unknown[]) {
    for (const entry of commandReply) {
      const info = parseCommand(entry);
      if (info) this.byName.set(info.name, info);
    }
  }

  get size(): number {
    return this.byName.size;
  }

  /** The command (resolving container commands to their subcommand), or undefined if unknown. */
  lookup(req: Request): CommandInfo | undefined {
    const info = this.byName.get(req.name);
    if (!info || !info.subcommands || req.argc < 2) return info;
    return info.subcommands.get(`${req.name}|${argLower(req, 1)}`) ?? info;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** Whether the request may run on a shared connection (ShareKind). Unknown commands may not. */
  shareKind(req: Request): ShareKind {
    return shareOf(this.lookup(req));
  }

  /**
   * Everything the proxy needs to know of a request from the table, in one lookup: the command,
   * its keys (keys()) and whether it may share a connection (shareKind()).
   */
  classify(req: Request): Classified {
    const info = this.lookup(req);
    return {
      known: info !== undefined,
      info,
      keys: this.keysOf(info, req),
      share: shareOf(info),
    };
  }

  /** Whether a request blocks on the server until data comes (BLPOP, XREAD BLOCK, WAIT...). */
  blocks(req: Request): boolean {
    const name = req.name;
    if (name === 'wait' || name === 'waitaof') return true;
    if (name === 'xread' || name === 'xreadgroup') {
      for (let i = 1; i < req.argc; i++) if (argLower(req, i) === 'block') return true;
      return false;
    }
    return this.lookup(req)?.flags.has('blocking') === true;
  }

  /**
   * The keys a request touches (latin1 strings), [] for none, or NEEDS_GETKEYS when only the
   * server can tell (incomplete key specs, commands not in the table). Wrong arity yields []
   * (the server rejects the command unrun).
   */
  keys(req: Request): string[] | null {
    return this.keysOf(this.lookup(req), req);
  }

  private keysOf(info: CommandInfo | undefined, req: Request): string[] | null {
    // Not in the table read at start (a module loaded since?): only the server can tell.
    if (!info) return NEEDS_GETKEYS;
    const argc = req.argc;
    if (info.arity > 0 ? argc !== info.arity : argc < -info.arity) return EMPTY;
    switch (info.mode) {
      case KeyMode.None:
        return EMPTY;
      case KeyMode.Triple: {
        const last = info.last < 0 ? argc + info.last : info.last;
        if (info.first === info.last) return info.first < argc ? [argStr(req, info.first)] : EMPTY;
        const out: string[] = [];
        for (let i = info.first; i <= last && i < argc; i += info.step) out.push(argStr(req, i));
        return out;
      }
      case KeyMode.Specs:
        return keysFromSpecs(info, req);
      case KeyMode.GetKeys:
        return NEEDS_GETKEYS;
    }
  }
}

function keysFromSpecs(info: CommandInfo, req: Request): string[] {
  const argc = req.argc;
  const out: string[] = [];
  for (const spec of info.specs) {
    let first: number;
    if (spec.begin.kind === 'index') {
      first = spec.begin.index;
    } else {
      const { keyword, startfrom } = spec.begin;
      first = -1;
      if (startfrom >= 0) {
        for (let i = startfrom; i < argc; i++) {
          if (argLower(req, i) === keyword) {
            first = i + 1;
            break;
          }
        }
      } else {
        for (let i = argc + startfrom; i >= 1; i--) {
          if (argLower(req, i) === keyword) {
            first = i + 1;
            break;
          }
        }
      }
      if (first < 0) continue; // keyword absent: this spec names no keys
    }
    let last: number;
    let step: number;
    const fk = spec.find;
    if (fk.kind === 'range') {
      step = fk.keystep;
      if (fk.lastkey >= 0) last = first + fk.lastkey;
      else if (fk.limit === 0) last = argc + fk.lastkey;
      else last = first + (Math.floor((argc - first) / fk.limit) + fk.lastkey);
    } else {
      step = fk.keystep;
      const idx = first + fk.keynumidx;
      if (idx >= argc) return EMPTY; // malformed: the server rejects it without running it
      const s = argStr(req, idx);
      if (!/^(0|[1-9][0-9]{0,9})$/.test(s)) return EMPTY; // bad numkeys: rejected unrun
      const numkeys = Number(s);
      first += fk.firstkey;
      last = first + numkeys - 1;
      if (last >= argc) return EMPTY; // more keys than arguments: rejected unrun
    }
    if (spec.notKey) continue;
    for (let i = first; i <= last; i += step) {
      if (i >= argc || i < 1) break;
      out.push(argStr(req, i));
    }
  }
  return out;
}

/** Turns a flat [name, value, name, value...] array into a map. */
function pairs(v: unknown): Map<string, unknown> {
  const m = new Map<string, unknown>();
  if (!Array.isArray(v)) return m;
  for (let i = 0; i + 1 < v.length; i += 2) m.set(String(v[i]), v[i + 1]);
  return m;
}

function parseSpec(raw: unknown): KeySpec | null {
  const m = pairs(raw);
  const flags = new Set(((m.get('flags') as unknown[]) ?? []).map((f) => String(f).toLowerCase()));
  if (flags.has('incomplete')) return null;
  const bs = pairs(m.get('begin_search'));
  const fk = pairs(m.get('find_keys'));
  const bsType = String(bs.get('type'));
  const fkType = String(fk.get('type'));
  const bsSpec = pairs(bs.get('spec'));
  const fkSpec = pairs(fk.get('spec'));
  let begin: BeginSearch;
  if (bsType === 'index') {
    begin = { kind: 'index', index: Number(bsSpec.get('index')), keyword: '', startfrom: 0 };
  } else if (bsType === 'keyword') {
    begin = {
      kind: 'keyword',
      index: 0,
      keyword: String(bsSpec.get('keyword')).toLowerCase(),
      startfrom: Number(bsSpec.get('startfrom')),
    };
  } else {
    return null;
  }
  let find: FindKeys;
  if (fkType === 'range') {
    find = {
      kind: 'range',
      lastkey: Number(fkSpec.get('lastkey')),
      keystep: Number(fkSpec.get('keystep')),
      limit: Number(fkSpec.get('limit')),
      keynumidx: 0,
      firstkey: 0,
    };
  } else if (fkType === 'keynum') {
    find = {
      kind: 'keynum',
      lastkey: 0,
      keystep: Number(fkSpec.get('keystep')),
      limit: 0,
      keynumidx: Number(fkSpec.get('keynumidx')),
      firstkey: Number(fkSpec.get('firstkey')),
    };
  } else {
    return null;
  }
  if (!(find.keystep >= 1)) return null;
  return { begin, find, notKey: flags.has('not_key') };
}

function parseCommand(entry: unknown): CommandInfo | null {
  if (!Array.isArray(entry) || entry.length < 6) return null;
  const name = String(entry[0]).toLowerCase();
  const arity = Number(entry[1]);
  const flags = new Set(((entry[2] as unknown[]) ?? []).map((f) => String(f).toLowerCase()));
  const first = Number(entry[3]);
  const last = Number(entry[4]);
  const step = Number(entry[5]);
  const rawSpecs = Array.isArray(entry[8]) ? (entry[8] as unknown[]) : null;
  const rawSubs = Array.isArray(entry[9]) ? (entry[9] as unknown[]) : null;
  let subcommands: Map<string, CommandInfo> | null = null;
  if (rawSubs && rawSubs.length > 0) {
    subcommands = new Map();
    for (const s of rawSubs) {
      const sub = parseCommand(s);
      if (sub) subcommands.set(sub.name, sub);
    }
  }
  const movable = flags.has('movablekeys');
  let mode: KeyMode;
  let specs: KeySpec[] = [];
  if (first === 0 && !movable && (!rawSpecs || rawSpecs.length === 0)) {
    mode = KeyMode.None;
  } else if (!movable) {
    mode = first > 0 ? KeyMode.Triple : KeyMode.None;
    const parsedSpecs = rawSpecs ? rawSpecs.map(parseSpec) : [];
    if (parsedSpecs.some((sp) => sp !== null && sp.notKey)) {
      // Some positions are not keys (shard channels of SPUBLISH, SSUBSCRIBE...): the triple
      // would name them, the specs do not.
      if (parsedSpecs.every((sp) => sp !== null)) {
        specs = parsedSpecs as KeySpec[];
        mode = specs.every((sp) => sp.notKey) ? KeyMode.None : KeyMode.Specs;
      } else {
        mode = KeyMode.GetKeys;
      }
    } else if (mode === KeyMode.None && rawSpecs && rawSpecs.length > 0) {
      // Keys described only by specs (no triple): use them if complete, else ask the server.
      const parsed = rawSpecs.map(parseSpec);
      if (parsed.every((s) => s !== null)) {
        specs = parsed as KeySpec[];
        mode = KeyMode.Specs;
      } else {
        mode = KeyMode.GetKeys;
      }
    }
  } else if (rawSpecs && rawSpecs.length > 0) {
    const parsed = rawSpecs.map(parseSpec);
    if (parsed.every((s) => s !== null)) {
      specs = parsed as KeySpec[];
      mode = KeyMode.Specs;
    } else {
      mode = KeyMode.GetKeys;
    }
  } else {
    mode = KeyMode.GetKeys;
  }
  const categories = new Set(((entry[6] as unknown[]) ?? []).map((c) => String(c).toLowerCase()));
  const share = shareKindOf(mode, flags, categories);
  return { name, arity, flags, first, last, step, mode, specs, subcommands, share };
}
