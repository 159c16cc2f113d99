/**
 * The MIGRATE method's script: the sweeper's step inside the source (Mover.sweepStep). The
 * proxy-side move's scripts are in move-scripts.ts.
 */
import { OWN_KEY_LUA } from './move-keys.js';
import { TOUCHES_LUA } from './sweep-move-scripts.js';

/**
 * The sweeper's step, inside the source. ARGV: cursor, count, big-key bytes, host, port, db,
 * timeout, small count, previous size, touches recent, keys the server expired or evicted so far
 * at the previous step's end, a SCAN MATCH pattern ('' for none: a canary's scope, scope.ts),
 * [AUTH pass | AUTH2 user pass]. Returns {next cursor, keys moved,
 * big keys, their sizes, error text or '', the small keys (only when MIGRATE failed, to be
 * probed), microseconds the step held the source, how many keys MIGRATE was given, the db's size
 * after, keys that left since the previous step, the SCAN count used, the K of every claim key
 * found, keys expired or evicted so far}. Keys named
 * `__rehome:*` (rehome's own keys: the phase hash, plan's probes) are skipped; claim keys (a
 * proxy-side move's, move-keys.ts) come back as K, for the protocol to wait for or take over.
 */
export const SWEEP_SCRIPT = `
-- TIME is non-deterministic: servers before 5.0 allow writes after it only in this mode
if redis.replicate_commands then pcall(redis.replicate_commands) end
local call = redis.call
${OWN_KEY_LUA}${TOUCHES_LUA}
local t0 = call('TIME')
local function held()
  local t = call('TIME')
  return (t[1] - t0[1]) * 1000000 + (t[2] - t0[2])
end
-- Touches first: keys that left the db since the last step (ARGV[9], its DBSIZE at the end; -1:
-- none) were moved by clients' first touches, whose next touches would wait behind this step in
-- the single-threaded server. Then (or when told touches are recent, ARGV[10]) the step takes the
-- small count (ARGV[8]).
-- Keys the server expired or evicted since (ARGV[11], INFO stats at the previous step's end) left
-- too, without a client: they are not touches. The counters are the server's, over every db, so
-- expiries in other dbs hide touches in this one (the step is then simply larger).
local others = touchedSince(tonumber(ARGV[9]), tonumber(ARGV[11]))
local count = ARGV[2]
if others > 0 or ARGV[10] == '1' then count = ARGV[8] end
local r
if ARGV[12] ~= '' then r = call('SCAN', ARGV[1], 'MATCH', ARGV[12], 'COUNT', count) else r = call('SCAN', ARGV[1], 'COUNT', count) end
local lim = tonumber(ARGV[3])
local args = {'MIGRATE', ARGV[4], ARGV[5], '', ARGV[6], ARGV[7]}
for i = 13, #ARGV do args[#args + 1] = ARGV[i] end
args[#args + 1] = 'KEYS'
local first, n = #args + 1, #args
local big, sizes, claims = {}, {}, {}
for _, k in ipairs(r[2]) do
  -- rehome's own keys (the phase hash, plan's probes) are never moved; a claim key (a
  -- proxy-side move's) comes back as K for the protocol (own, move-keys.ts).
  if not own(k, claims) then
    local m = call('MEMORY', 'USAGE', k)
    if m then
      if m >= lim then big[#big + 1] = k; sizes[#sizes + 1] = m else n = n + 1; args[n] = k end
    end
  end
end
local sent = n - first + 1
if sent == 0 then return {r[1], 0, big, sizes, '', {}, held(), 0, call('DBSIZE'), others, tonumber(count), claims, gone()} end
-- Keys moved = DBSIZE before MIGRATE minus after (O(1); EXISTS cost a lookup per key). The script
-- is atomic, so only MIGRATE changes the db in between, deleting each key it moved, also when it
-- fails part-way. A key it found expired and deleted would be counted too; with time frozen for
-- the script and SCAN having dropped the keys expired at that time, there are none.
local before = call('DBSIZE')
local res = redis.pcall(unpack(args))
local moved = before - call('DBSIZE')
local after = before - moved
if type(res) == 'table' and res.err then
  return {r[1], moved, big, sizes, res.err, {unpack(args, first)}, held(), sent, after, others, tonumber(count), claims, gone()}
end
return {r[1], moved, big, sizes, '', {}, held(), sent, after, others, tonumber(count), claims, gone()}`;

