/**
 * The sweeper's proxy-side step as scripts (proxy-sweep.ts drives them): one source script per
 * step releases the batch published since the previous step and claims the next one; one target
 * script publishes a dumped batch. Key names go over the wire once each way: the scripts derive
 * the claim, record and marker names from K themselves (move-keys.ts in Lua), and a batch's fresh
 * claims share one token and one lease (one script, one TIME).
 */
import { OWN_KEY_LUA } from './move-keys.js';
import { LIB } from './move-scripts.js';

/**
 * Lua shared with the MIGRATE sweep step (migrate-scripts.ts): the touches-first signal.
 * `gone()`: keys the server expired or evicted so far (INFO stats, every db). `touchedSince(prev,
 * prevGone)`: keys that left the db since the previous step ended with DBSIZE `prev` (-1: no
 * previous step) and `prevGone` keys gone (-1: unknown), less those the server expired or
 * evicted: between two steps only clients' first touches (from any process of the fleet) move
 * keys out, since the sweeper's own changes all happen inside its step scripts.
 */
export const TOUCHES_LUA = `
local function gone()
  local s = redis.call('INFO', 'stats')
  return tonumber(string.match(s, 'expired_keys:(%d+)') or '0') + tonumber(string.match(s, 'evicted_keys:(%d+)') or '0')
end
local function touchedSince(prev, prevGone)
  if prev < 0 then return 0 end
  local others = prev - redis.call('DBSIZE')
  if prevGone >= 0 then others = others - (gone() - prevGone) end
  return others
end`;

/**
 * The source's own CPU time in microseconds (`INFO cpu`: its main thread where the server tells,
 * else the whole process), or -1 when INFO does not say. A step's size is judged by the work it
 * gave the source: on a loaded machine the wall clock also counts the time the server waited for
 * a core, which would shrink every batch and multiply the round trips (each waiting for a core in
 * turn) exactly when CPU is scarce.
 */
const CPU_LUA = `
local function cpuUs()
  local s = redis.call('INFO', 'cpu')
  local sys = string.match(s, 'used_cpu_sys_main_thread:([%d%.]+)') or string.match(s, 'used_cpu_sys:([%d%.]+)')
  local usr = string.match(s, 'used_cpu_user_main_thread:([%d%.]+)') or string.match(s, 'used_cpu_user:([%d%.]+)')
  if not sys or not usr then return -1 end
  return (tonumber(sys) + tonumber(usr)) * 1000000
end`;

/**
 * Step 6 for a batch: `releaseBatch(tok, from)` deletes the claim key and record of each key in
 * ARGV[from..] whose record still holds `tok`, and returns how many. A claim whose token changed
 * was taken over (this process stalled past its lease): its new mover releases it.
 */
const RELEASE_LUA = `
local function releaseBatch(tok, from)
  local n = 0
  for i = from, #ARGV do
    local k = ARGV[i]
    local ck, cr = named('c', k), named('r', k)
    if call('HGET', cr, 't') == tok then call('UNLINK', ck, cr); n = n + 1 end
  end
  return n
end`;

/**
 * Source, the sweeper's step. ARGV: cursor, count, owner, lease ms, big-key bytes, dump ('1': the
 * payloads are DUMPs; else a string's value, or nil for another type, which the type-aware copy reads),
 * small count, previous size, touches recent ('1'), previous gone, then the batch to release:
 * its token, the token of the batch being published (its claim keys are not handed back), the
 * SCAN MATCH pattern ('' for none: a canary's scope), and the keys to release. In order: the touches-first signal (SWEEP_SCRIPT's rule: keys that
 * left since the previous step -> the small count), step 6 for the released batch (each claim
 * whose record still holds the token), then one SCAN step claiming (and DUMPing) every small key.
 * Returns {cursor, claimed keys, their token, {index, deadline} pairs for keys with a TTL,
 * payloads, big keys, their sizes, claim keys' K found (moved one by one through the protocol),
 * microseconds held (the source's CPU time, or its clock where that is less: CPU_LUA), DBSIZE after, the claims' lease end, keys touched since the previous step,
 * the SCAN count used, keys gone so far}.
 */
export const SWEEP_CLAIM_SCRIPT = `${LIB}${OWN_KEY_LUA}${TOUCHES_LUA}${RELEASE_LUA}${CPU_LUA}
local cpu0 = cpuUs()
local owner, lease, big, dump = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local others = touchedSince(tonumber(ARGV[8]), tonumber(ARGV[10]))
local released = releaseBatch(ARGV[11], 14)
local count = ARGV[2]
if others > 0 or ARGV[9] == '1' then count = ARGV[7] end
local r
if ARGV[13] ~= '' then r = call('SCAN', ARGV[1], 'MATCH', ARGV[13], 'COUNT', count) else r = call('SCAN', ARGV[1], 'COUNT', count) end
local keys, dls, pls, bigs, sizes, claims = {}, {}, {}, {}, {}, {}
for _, k in ipairs(r[2]) do
  if not own(k, claims) then
    local m = call('MEMORY', 'USAGE', k)
    if m then
      if m >= big then
        bigs[#bigs + 1] = k; sizes[#sizes + 1] = m
      else
        local ck = named('c', k)
        local c = claim(k, ck, named('r', k), owner, lease, true)
        if c[1] == 'CLAIMED' then
          keys[#keys + 1] = k
          if c[3] ~= '-1' then dls[#dls + 1] = #keys; dls[#dls + 1] = c[3] end
          if dump then pls[#pls + 1] = call('DUMP', ck)
          elseif call('TYPE', ck)['ok'] == 'string' then pls[#pls + 1] = call('GET', ck)
          else pls[#pls + 1] = false end
        elseif c[1] ~= 'ABSENT' then
          claims[#claims + 1] = k
        end
      end
    end
  end
end
counted(RECORDS, #keys - released)
-- claims of the batch being published (token ARGV[12]) are this sweeper's own, in flight
if #claims > 0 and ARGV[12] ~= '' then
  local others = {}
  for _, k in ipairs(claims) do
    if call('HGET', named('r', k), 't') ~= ARGV[12] then others[#others + 1] = k end
  end
  claims = others
end
local t = call('TIME')
local held = (tonumber(t[1]) * 1000000 + tonumber(t[2])) - nowUs
if cpu0 >= 0 then held = math.min(held, math.max(0, math.floor(cpuUs() - cpu0))) end
return {r[1], keys, fmt(nowUs), dls, pls, bigs, sizes, claims, held, call('DBSIZE'), now + lease, others, tonumber(count), gone()}`;

/**
 * Source: step 6 alone, for the sweeper's last batches (a db's end, a pause). ARGV: token, keys.
 * Returns how many were released.
 */
export const SWEEP_RELEASE_SCRIPT = `${LIB}${RELEASE_LUA}
local n = releaseBatch(ARGV[1], 2)
counted(RECORDS, -n)
return n`;

/**
 * Target: publishes a dumped batch (steps 4-5 in one script, as PUBLISH_DUMP_SCRIPT). KEYS: the
 * keys. ARGV: window ms, lease end, the payloads, then {index, deadline} pairs for keys with a
 * TTL. The marker is set before the RESTORE and dropped if it fails, so K never stands in the
 * target without its marker (a write refused for memory after the RESTORE would leave it so).
 * Returns {keys published, {index, outcome} pairs for the others} (outcomes as PUBLISH_DUMP_SCRIPT).
 */
export const PUBLISH_BATCH_SCRIPT = `${LIB}
local window, le, n = tonumber(ARGV[1]), tonumber(ARGV[2]), #KEYS
local dl = {}
for i = 3 + n, #ARGV, 2 do dl[tonumber(ARGV[i])] = ARGV[i + 1] end
local late = now > le + window
local ok, other, marked = 0, {}, 0
for i = 1, n do
  local k = KEYS[i]
  local m = named('m', k)
  local d = dl[i]
  local o
  if call('EXISTS', k, m) > 0 then
    if call('EXISTS', k) == 1 then o = 'EXISTS' else o = 'MARKED' end
  elseif late then o = 'LATE'
  else
    local s = redis.pcall('SET', m, '1')
    if type(s) == 'table' and s.err then o = 'FAIL ' .. s.err
    elseif d and tonumber(d) <= now then o = 'EXPIRED'
    else
      local r
      if d then r = redis.pcall('RESTORE', k, d, ARGV[2 + i], 'ABSTTL') else r = redis.pcall('RESTORE', k, '0', ARGV[2 + i]) end
      if type(r) == 'table' and r.err then call('DEL', m); o = 'FAIL ' .. r.err else ok = ok + 1 end
    end
  end
  if o then other[#other + 1] = i; other[#other + 1] = o end
  if not o or o == 'EXPIRED' then marked = marked + 1 end
end
counted(MARKERS, marked)
return {ok, other}`;
