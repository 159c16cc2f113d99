/**
 * The names of a proxy-side move's own keys (docs/DESIGN.md "Moves"): the claim key and its record
 * in the source, the staging key, its chunk count and the publish-once marker in the target. All
 * start with `__rehome:` (the gate refuses them to clients, the sweeper never moves them as keys)
 * and all hash to K's cluster slot where K allows it:
 *
 *   K with a hash tag ({tag}...)      -> __rehome:<kind>:K      (the first {...} is still K's tag)
 *   K without one                     -> __rehome:<kind>{K}
 *
 * (':' against '{' after the kind keeps the two forms apart: K = "{a}" and K = "a" differ.)
 * The second form fails only for a K without a hash tag that holds a '}' (or is empty): its own
 * slot is the CRC of all of K, which no other name can reproduce. Such a key's move keys land in
 * another slot; fine for a standalone target, and the reason a cluster target would need a
 * different layout.
 */
import { RESERVED_PREFIX } from '../phase/phase.js';

const OPEN = 0x7b;
const CLOSE = 0x7d;

/** Whether Redis Cluster hashes K by a tag (a non-empty {...}, the first '{' and the next '}'). */
export function hasHashTag(k: Buffer): boolean {
  const open = k.indexOf(OPEN);
  if (open < 0) return false;
  const close = k.indexOf(CLOSE, open + 1);
  return close > open + 1;
}

function named(kind: string, k: Buffer): Buffer {
  const p = RESERVED_PREFIX + kind;
  return hasHashTag(k) ? Buffer.concat([Buffer.from(p + ':', 'latin1'), k]) : Buffer.concat([Buffer.from(p + '{', 'latin1'), k, CLOSE_BUF]);
}
const CLOSE_BUF = Buffer.from('}');

/** The names of one key's move keys; staging and its count carry the token that owns them. */
export interface MoveKeys {
  key: Buffer;
  /** Source: K renamed while it is carried. */
  claim: Buffer;
  /** Source: the claim's record (token, owner, lease, deadline). */
  record: Buffer;
  /** Target: set when K was published (or found expired); a later publish refuses. */
  marker: Buffer;
}

export function moveKeys(k: Buffer): MoveKeys {
  return { key: k, claim: named('c', k), record: named('r', k), marker: named('m', k) };
}

/** SCAN pattern of the claim keys (every K a proxy-side move holds in the source). */
export const CLAIM_PATTERN = `${RESERVED_PREFIX}c*`;

/** K of a claim key (`__rehome:c:K` or `__rehome:c{K}`), or null for any other key. */
export function claimedKey(ck: Buffer): Buffer | null {
  const p = Buffer.from(`${RESERVED_PREFIX}c`, 'latin1');
  if (ck.length <= p.length || !ck.subarray(0, p.length).equals(p)) return null;
  const sep = ck[p.length];
  if (sep === 0x3a /* : */) {
    const k = ck.subarray(p.length + 1);
    return hasHashTag(k) ? k : null;
  }
  if (sep === OPEN && ck[ck.length - 1] === CLOSE) return ck.subarray(p.length + 1, ck.length - 1);
  return null;
}

/** Target: the staging key of token `tok` and its chunk count. */
export function stagingKeys(k: Buffer, tok: string): { staging: Buffer; count: Buffer } {
  return { staging: named(`s:${tok}`, k), count: named(`n:${tok}`, k) };
}

/**
 * Per-db counts of rehome's own keys, kept by the move scripts, so DBSIZE and INFO through rehome
 * can leave them out without a scan (session/keyspace-moves.ts): claim records in the source (a
 * claim key stands for its K and is counted as K), publish-once markers in the target. Each is
 * deleted when it reaches 0.
 */
export const RECORDS_COUNT = `${RESERVED_PREFIX}count:records`;
export const MARKERS_COUNT = `${RESERVED_PREFIX}count:markers`;

/** SCAN patterns of the publish-once markers (deleted once the migration has ended). */
export const MARKER_PATTERN = `${RESERVED_PREFIX}m[:{]*`;

/**
 * Lua for the sweep scripts, inside their loop over SCAN's keys: `own(k, claims)` is true for
 * rehome's own keys, and appends K to `claims` when k is a claim key (__rehome:c:K or
 * __rehome:c{K}): the protocol waits for it or takes it over. 95 is '_': a byte compare first,
 * since a substring of every key would cost an allocation each.
 */
export const OWN_KEY_LUA = `
local function own(k, claims)
  if string.byte(k, 1) ~= 95 or string.sub(k, 1, ${RESERVED_PREFIX.length}) ~= '${RESERVED_PREFIX}' then return false end
  local f = string.sub(k, ${RESERVED_PREFIX.length + 1}, ${RESERVED_PREFIX.length + 2})
  if f == 'c:' then claims[#claims + 1] = string.sub(k, ${RESERVED_PREFIX.length + 3})
  elseif f == 'c{' then claims[#claims + 1] = string.sub(k, ${RESERVED_PREFIX.length + 3}, -2) end
  return true
end`;
