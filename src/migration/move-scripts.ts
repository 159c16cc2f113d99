/**
 * The proxy-side move's steps (docs/DESIGN.md "Moves", steps 1-6), each one atomic script. The
 * protocol is the model-checked one (docs/move-protocol-model.py), with the publish-once marker in
 * the target instead of fences (docs/DESIGN.md says why).
 *
 * Tokens: a fresh claim takes the source's TIME in microseconds, a takeover the record's token + 1
 * (or TIME, whichever is higher). The record holds the highest token issued for K from its first
 * claim to its release, and K cannot be claimed afresh after that (rule 1), so tokens of one key
 * only grow, as the model's counter does; no counter key is left in the source once it is empty.
 */
import { RESERVED_PREFIX } from '../phase/phase.js';
import { MARKER_PATTERN, MARKERS_COUNT, RECORDS_COUNT } from './move-keys.js';

/** Shared Lua: clocks, names of a key's move keys (move-keys.ts in Lua), one key's claim. */
export const LIB = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local call = redis.call
local tm = call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local nowUs = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local function fmt(x) return string.format('%.0f', x) end
-- the counts of claim records (source) and markers (target), move-keys.ts RECORDS_COUNT
local RECORDS, MARKERS = '${RECORDS_COUNT}', '${MARKERS_COUNT}'
-- On a cluster node a count key of another slot can't be reached from a script: the count is then
-- not kept there (DBSIZE through rehome counts markers on a cluster target), and the move goes on.
local function counted(name, n)
  if n == 0 then return end
  local v = redis.pcall('INCRBY', name, n)
  if type(v) == 'number' and v <= 0 then redis.pcall('DEL', name) end
end
local function named(p, k)
  local o = string.find(k, '{', 1, true)
  if o then
    local c = string.find(k, '}', o + 1, true)
    if c and c > o + 1 then return '${RESERVED_PREFIX}' .. p .. ':' .. k end
  end
  return '${RESERVED_PREFIX}' .. p .. '{' .. k .. '}'
end
-- K's absolute expiry (ms, source clock), -1 for none. PEXPIRETIME is exact; servers before 7.0
-- only have PTTL.
local function deadline(k)
  local d = redis.pcall('PEXPIRETIME', k)
  if type(d) == 'table' then
    local t = call('PTTL', k)
    if t < 0 then return -1 end
    return now + t
  end
  return d
end
-- One key's claim (step 1) or takeover (step 2). Returns {status, token, deadline, owner, lease}
-- (lease: its end on the source's clock; for HELD, the ms left):
-- ABSENT (neither K nor its claim: K is absent), HELD (another mover's live lease), CLAIMED or
-- TAKEN (the caller carries the claim key now). The caller's own earlier claim is taken over at
-- once: that attempt has ended (single-flight), and a new token keeps its staging apart.
-- \`present\`: the caller has just seen K (the sweep's SCAN and MEMORY USAGE), one EXISTS less.
local function claim(k, ck, cr, owner, lease, present)
  if call('EXISTS', ck) == 1 then
    local r = call('HMGET', cr, 't', 'o', 'l', 'd')
    local l = tonumber(r[3] or '0')
    if r[2] ~= owner and l > now then return {'HELD', r[1] or '0', r[4] or '-1', r[2] or '', l - now} end
    local tok = fmt(math.max(tonumber(r[1] or '0') + 1, nowUs))
    call('HSET', cr, 't', tok, 'o', owner, 'l', fmt(now + lease))
    return {'TAKEN', tok, r[4] or '-1', owner, now + lease}
  end
  if not present and call('EXISTS', k) == 0 then return {'ABSENT', '0', '-1', '', 0} end
  local d = fmt(deadline(k))
  local tok = fmt(nowUs)
  call('RENAME', k, ck)
  if d ~= '-1' then call('PERSIST', ck) end
  -- the record never has a TTL; it goes with the claim key at release (every field is written:
  -- nothing of an older record can survive)
  call('HSET', cr, 't', tok, 'o', owner, 'l', fmt(now + lease), 'd', d)
  return {'CLAIMED', tok, d, owner, now + lease}
end
`;

/**
 * Source. Claims (or takes over) each key given. KEYS: K, CK, CR per key. ARGV: owner, lease ms,
 * dump limit (bytes: the claim keys below it come back DUMPed; -1: none). Returns per key
 * {status, token, deadline, owner, lease (end, or ms left if HELD), payload or false, size}.
 */
export const CLAIM_SCRIPT = `${LIB}
local owner, lease, lim = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out, fresh = {}, 0
for i = 1, #KEYS, 3 do
  local r = claim(KEYS[i], KEYS[i + 1], KEYS[i + 2], owner, lease)
  if r[1] == 'CLAIMED' then fresh = fresh + 1 end
  r[6] = false
  r[7] = 0
  if r[1] == 'CLAIMED' or r[1] == 'TAKEN' then
    local m = call('MEMORY', 'USAGE', KEYS[i + 1]) or 0
    r[7] = m
    if lim >= 0 and m < lim then r[6] = call('DUMP', KEYS[i + 1]) end
  end
  out[#out + 1] = r
end
counted(RECORDS, fresh)
return out`;

/**
 * Target: publishes DUMP payloads (steps 4-5 for a copy of one chunk, staged and published in one
 * script: nothing can run between the two). KEYS: K, M per key. ARGV: late-publish window ms, then
 * per key: payload, deadline, lease end. Returns per key one of OK, EXISTS (the target copy wins),
 * MARKED (published before: the target's copy, or its deletion, wins), EXPIRED, LATE (the lease
 * lapsed longer ago than the window: refused), or the RESTORE error.
 */
export const PUBLISH_DUMP_SCRIPT = `${LIB}
local window = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, 2 do
  local k, m = KEYS[i], KEYS[i + 1]
  local j = 2 + (i - 1) / 2 * 3
  local d, le = tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  if call('EXISTS', k) == 1 then out[#out + 1] = 'EXISTS'
  elseif call('EXISTS', m) == 1 then out[#out + 1] = 'MARKED'
  elseif now > le + window then out[#out + 1] = 'LATE'
  elseif d >= 0 and d <= now then call('SET', m, '1'); counted(MARKERS, 1); out[#out + 1] = 'EXPIRED'
  else
    -- the marker first, dropped if the RESTORE fails: K never stands without it (a write refused
    -- for memory after the RESTORE would leave it so)
    local s = redis.pcall('SET', m, '1')
    local r = s
    if not (type(s) == 'table' and s.err) then
      if d >= 0 then r = redis.pcall('RESTORE', k, ARGV[j + 1], ARGV[j], 'ABSTTL')
      else r = redis.pcall('RESTORE', k, '0', ARGV[j]) end
      if type(r) == 'table' and r.err then call('DEL', m) end
    end
    if type(r) == 'table' and r.err then out[#out + 1] = 'FAIL ' .. r.err else counted(MARKERS, 1); out[#out + 1] = 'OK' end
  end
end
return out`;

/**
 * Target: publishes keys copied in one chunk each (steps 4-5 in one script: the chunk goes into
 * the staging key, which is renamed to K at once; a command that fails drops the staging key, so
 * K never holds half a value; a chunk that is one SET, a string, writes K itself). KEYS: K, M, staging per key. ARGV: window ms, then per key:
 * deadline, lease end, the chunk's command count, then per command: name, subcommand (or empty), argument count,
 * arguments. Returns per key what PUBLISH_DUMP_SCRIPT does.
 */
export const PUBLISH_CHUNKS_SCRIPT = `${LIB}
local window = tonumber(ARGV[1])
local out = {}
local j = 2
for i = 1, #KEYS, 3 do
  local k, m, s = KEYS[i], KEYS[i + 1], KEYS[i + 2]
  local d, le, n = tonumber(ARGV[j]), tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  local first = j + 3
  -- the end of this key's commands
  j = first
  for _ = 1, n do j = j + 3 + tonumber(ARGV[j + 2]) end
  if call('EXISTS', k) == 1 then out[#out + 1] = 'EXISTS'
  elseif call('EXISTS', m) == 1 then out[#out + 1] = 'MARKED'
  elseif now > le + window then out[#out + 1] = 'LATE'
  elseif d >= 0 and d <= now then call('SET', m, '1'); counted(MARKERS, 1); out[#out + 1] = 'EXPIRED'
  elseif n == 1 and ARGV[first] == 'SET' and ARGV[first + 1] == '' and ARGV[first + 2] == '1' then
    -- a string in one SET: K is written at once (one command writes all or nothing), the marker
    -- first and dropped if the SET fails, as PUBLISH_DUMP_SCRIPT does
    local r = redis.pcall('SET', m, '1')
    if not (type(r) == 'table' and r.err) then
      r = redis.pcall('SET', k, ARGV[first + 3])
      if type(r) == 'table' and r.err then call('DEL', m) end
    end
    if type(r) == 'table' and r.err then out[#out + 1] = 'FAIL ' .. r.err
    else
      if d >= 0 then call('PEXPIREAT', k, ARGV[first - 3]) end
      counted(MARKERS, 1)
      out[#out + 1] = 'OK'
    end
  else
    call('DEL', s)
    local at, err = first, nil
    while at < j and not err do
      local c = tonumber(ARGV[at + 2])
      local r
      if ARGV[at + 1] == '' then r = redis.pcall(ARGV[at], s, unpack(ARGV, at + 3, at + 2 + c))
      else r = redis.pcall(ARGV[at], ARGV[at + 1], s, unpack(ARGV, at + 3, at + 2 + c)) end
      if type(r) == 'table' and r.err then err = r.err end
      at = at + 3 + c
    end
    if err then call('UNLINK', s); out[#out + 1] = 'FAIL ' .. err
    elseif call('EXISTS', s) == 0 then out[#out + 1] = 'FAIL the copy wrote nothing'
    else
      call('RENAME', s, k)
      if d >= 0 then call('PEXPIREAT', k, ARGV[first - 3]) end
      call('SET', m, '1')
      counted(MARKERS, 1)
      out[#out + 1] = 'OK'
    end
  end
end
return out`;

/**
 * Target, once the migration has drained: the publish-once markers get a TTL. No claim is left
 * in the source then, so no mover can renew a lease, and a stalled one is refused (LATE) once its
 * lease is older than the window: past that the markers guard nothing. ARGV: cursor, TTL ms.
 * Returns {next cursor, markers given the TTL}.
 */
export const EXPIRE_MARKERS_SCRIPT = `
local r = redis.call('SCAN', ARGV[1], 'MATCH', '${MARKER_PATTERN}', 'COUNT', 1000)
for _, k in ipairs(r[2]) do redis.call('PEXPIRE', k, ARGV[2]) end
if ARGV[1] == '0' then redis.pcall('PEXPIRE', '${MARKERS_COUNT}', ARGV[2]) end
return {r[1], #r[2]}`;

/**
 * Target, step 4: applies chunk i to the staging key, only if it holds exactly i chunks (its count
 * key says so). KEYS: staging, count. ARGV: i, staging TTL ms (garbage collection of an abandoned
 * copy), then per command: name, subcommand (or empty), number of arguments, the arguments. Returns OK, or SKEW and the
 * count found.
 */
export const STAGE_SCRIPT = `
local call = redis.call
local have = tonumber(call('GET', KEYS[2]) or '0')
if have ~= tonumber(ARGV[1]) then return {'SKEW', have} end
local j = 3
while j <= #ARGV do
  local n = tonumber(ARGV[j + 2])
  if ARGV[j + 1] == '' then call(ARGV[j], KEYS[1], unpack(ARGV, j + 3, j + 2 + n))
  else call(ARGV[j], ARGV[j + 1], KEYS[1], unpack(ARGV, j + 3, j + 2 + n)) end
  j = j + 3 + n
end
call('INCR', KEYS[2])
call('PEXPIRE', KEYS[2], ARGV[2])
if call('EXISTS', KEYS[1]) == 1 then call('PEXPIRE', KEYS[1], ARGV[2]) end
return {'OK', have + 1}`;

/**
 * Target, step 5 for a staged copy: first match wins (EXISTS, MARKED, LATE, FAIL for an incomplete
 * staging, EXPIRED), else RENAME staging to K with PEXPIREAT deadline or PERSIST. Every outcome
 * drops the staging key and its count. KEYS: K, M, staging, count. ARGV: chunks, deadline, lease
 * end, window ms.
 */
export const PUBLISH_STAGED_SCRIPT = `${LIB}
local k, m, s, n = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local d, le, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local r
if call('EXISTS', k) == 1 then r = 'EXISTS'
elseif call('EXISTS', m) == 1 then r = 'MARKED'
elseif now > le + window then r = 'LATE'
elseif tonumber(call('GET', n) or '0') ~= tonumber(ARGV[1]) or call('EXISTS', s) == 0 then r = 'FAIL staging incomplete'
elseif d >= 0 and d <= now then call('SET', m, '1'); counted(MARKERS, 1); r = 'EXPIRED'
else
  call('RENAME', s, k)
  if d >= 0 then call('PEXPIREAT', k, ARGV[2]) else call('PERSIST', k) end
  call('SET', m, '1')
  counted(MARKERS, 1)
  r = 'OK'
end
call('UNLINK', s, n)
return r`;

/**
 * Source, step 6: deletes each claim key and its record if the record still holds the token
 * (UNLINK: a big key's memory is freed in the background, not while the source waits). KEYS: CK,
 * CR per key; ARGV: the tokens. Returns how many were released.
 */
export const RELEASE_SCRIPT = `${LIB}
local n = 0
for i = 1, #KEYS, 2 do
  if call('HGET', KEYS[i + 1], 't') == ARGV[(i + 1) / 2] then call('UNLINK', KEYS[i], KEYS[i + 1]); n = n + 1 end
end
counted(RECORDS, -n)
return n`;

/** Source: renews a lease still held by the token. KEYS: CR; ARGV: token, lease ms. Returns the new lease end, or 0 if the token lost it. */
export const RENEW_SCRIPT = `${LIB}
if call('HGET', KEYS[1], 't') ~= ARGV[1] then return 0 end
call('HSET', KEYS[1], 'l', fmt(now + tonumber(ARGV[2])))
return now + tonumber(ARGV[2])`;
