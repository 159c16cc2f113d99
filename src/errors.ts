/**
 * Errors with stable codes, and every error text a client can see from the proxy itself.
 * Client-visible replies start with a Redis-style error code so client libraries classify them.
 */

/** Base class of rehome's errors; `code` is stable and safe to match on. */
export class RehomeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RehomeError';
  }
}

/** Malformed RESP from a client or an upstream: the connection is closed after the reply. */
export class ProtocolError extends RehomeError {
  constructor(message: string) {
    super('EPROTOCOL', message);
    this.name = 'ProtocolError';
  }
}

/** Bad configuration or flags: the CLI prints the message and exits non-zero. */
export class ConfigError extends RehomeError {
  constructor(message: string) {
    super('ECONFIG', message);
    this.name = 'ConfigError';
  }
}

/**
 * A cluster target: no replica of the master confirmed moved keys (WAIT 1), so their old copies
 * are kept (src/cluster/replica-wait.ts); the next move finds them in both and resolves by rule 3.
 */
export class ReplicaNotConfirmed extends RehomeError {
  constructor(message: string) {
    super('EREPLICA', message);
    this.name = 'ReplicaNotConfirmed';
  }
}

/** A key could not be confirmed absent from the source; the command is not forwarded. */
export class MoveError extends RehomeError {
  constructor(
    code: string,
    message: string,
  ) {
    super(code, message);
    this.name = 'MoveError';
  }
}

/** Printable form of a key for error messages (binary bytes escaped, long keys shortened). */
export function showKey(key: string): string {
  let s = '';
  for (let i = 0; i < key.length && i < 64; i++) {
    const c = key.charCodeAt(i);
    s += c >= 32 && c < 127 && c !== 39 ? key[i] : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return key.length > 64 ? `${s}...` : s;
}

/** The RESP error texts the proxy produces itself (without the leading '-' and CRLF). */
export const ErrorText = {
  protocol: (msg: string) => `ERR ${msg}`,
  /** Redis's own text for a connection past maxclients. */
  maxClients: () => 'ERR max number of clients reached',
  queryBufferLimit: (limit: number) =>
    `ERR rehome: client query buffer limit reached (more than ${limit} bytes of unfinished requests, see --client-query-buffer-limit); closing the connection`,
  sourceUnavailable: (detail: string) =>
    `TRYAGAIN rehome: source unavailable, key not moved (${detail})`,
  targetUnavailable: (detail: string) => `TRYAGAIN rehome: target unavailable (${detail})`,
  moveFailed: (key: string, cause: string) =>
    `TRYAGAIN rehome: could not move key '${showKey(key)}' from source to target: ${cause}`,
  claimHeld: (key: string, waitedMs: number) =>
    `TRYAGAIN rehome: key '${showKey(key)}' is being moved by another rehome process (waited ${waitedMs} ms for its claim to be published or its lease to lapse)`,
  targetOom: (key: string) =>
    `OOM rehome: target out of memory, key '${showKey(key)}' stays in the source`,
  getkeysFailed: (cmd: string, detail: string) =>
    `ERR rehome: cannot determine the keys of '${cmd}': ${detail}`,
  refused: (cmd: string, why: string) => `ERR rehome: '${cmd}' is not supported through rehome: ${why}`,
  notInMulti: (cmd: string) =>
    `ERR rehome: '${cmd}' inside MULTI is not supported during a migration (it spans both instances)`,
  /** A command whose keys lie on both sides of a canary migration's scope (like CROSSSLOT). */
  crossScope: (inKey: string, outKey: string, scope: string) =>
    `CROSSSCOPE rehome: keys on both sides of the migration's scope: '${showKey(inKey)}' is in scope ${scope}, '${showKey(outKey)}' is not; send them in separate commands`,
  /** Keys out of scope inside a transaction, which runs on the new server. */
  scopeInMulti: (cmd: string, key: string, scope: string) =>
    `CROSSSCOPE rehome: '${cmd}' inside MULTI or WATCH names '${showKey(key)}', outside the migration's scope ${scope}; transactions run on the new server and may use only keys in scope`,
  scopeTracking: (key: string, scope: string) =>
    `CROSSSCOPE rehome: '${showKey(key)}' is outside the migration's scope ${scope}, and client-side caching (CLIENT TRACKING) is kept only for keys in scope; turn tracking off for this connection or widen the scope`,
  /** A script or function without keys wrote (it runs read-only in a canary: scope-scripts.ts). */
  scopeKeylessScript: (cmd: string, scope: string) =>
    `CROSSSCOPE rehome: '${cmd}' declares no keys, so it runs read-only on the new server during a canary migration (scope ${scope}), and it writes (or the new server has no ${cmd}_RO); declare the keys it writes`,
  /** SCRIPT/FUNCTION changes run on both servers in a canary; the old one refused (its error first). */
  scopeOldRefused: (error: string) =>
    `${error} (rehome: the new server ran it, the old server, which serves the keys outside the canary's scope, refused it)`,
  oldUnavailable: (where: string, detail: string) =>
    `TRYAGAIN rehome: the old server ${where} is unavailable for keys outside the scope (${detail})`,
  sortPattern: () =>
    'ERR rehome: SORT with BY or GET patterns reads keys it cannot name, which may still be in the source; not supported during a migration',
  pubsubContext: (cmd: string) =>
    `ERR Can't execute '${cmd}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`,
  tooBigCursor: () => 'ERR rehome: invalid cursor',
  invalidCursor: () => 'ERR invalid cursor',
  swapdbWhileMoving: () =>
    'ERR rehome: SWAPDB is refused while keys move (phase migrate or reverse): it would swap keys in the old server behind the back of every rehome process; run it in hold or once drained',
  /** Redis Cluster's own texts (a cluster target: src/cluster/). */
  crossSlot: () => "CROSSSLOT Keys in request don't hash to the same slot",
  clusterOtherShard: () =>
    'ERR rehome: SSUBSCRIBE to a shard channel of another cluster master than this connection\'s other shard channels is not supported (use one connection per shard)',
  clusterSelect: () => 'ERR SELECT is not allowed in cluster mode',
  slotUnserved: () => 'CLUSTERDOWN Hash slot not served',
  clusterNodeLost: (node: string, why: string) => `TRYAGAIN rehome: connection to cluster node ${node} lost (${why})`,
  clusterRedirects: (slot: number) => `TRYAGAIN rehome: slot ${slot} kept moving between cluster nodes (too many MOVED/ASK redirects)`,
  clusterWatchSlot: () => "CROSSSLOT Keys in request don't hash to the same slot (rehome: a transaction's keys must share the slot of its WATCHed keys)",
  clusterNoResp3: () =>
    'NOPROTO sorry, this protocol version is not supported (rehome: a cluster as the new server speaks RESP2 only)',
  clusterNoTracking: () =>
    'ERR rehome: CLIENT TRACKING is not supported with a cluster as the new server (invalidations would come from every node)',
  execAbort: () => 'EXECABORT Transaction discarded because of previous errors.',
  reservedKey: () => "ERR rehome: keys starting with '__rehome:' are reserved for rehome's own state",
} as const;
