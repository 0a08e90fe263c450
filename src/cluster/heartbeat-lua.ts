/**
 * The heartbeat's Lua scripts (see heartbeat.ts for the model). Each is atomic and one round
 * trip; times come from Redis (TIME), so instances with skewed clocks agree on who is live.
 * Keys: `hb:live` (sorted set id -> last beat ms), `hb:dead` (set of deaths not yet handled),
 * `hb:declared-dead:<id>` (tells a returning instance its fate), `hb:claim:<id>` (who handles it).
 */

// KEYS: live, dead set, dead marker of this instance. ARGV: id. Returns 0 (beat), 1 (registered
// anew), 2 (registered again after its death was handled), 3 (death pending: stays out).
export const BEAT = `
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 3 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local wasDead = redis.call('DEL', KEYS[3])
local added = redis.call('ZADD', KEYS[1], now, ARGV[1])
if wasDead == 1 then return 2 end
return added`;

// KEYS: live, dead set. ARGV: deadAfterMs, markerTtlMs, marker key prefix, claim key prefix,
// claimant, claimMs. Moves every stale instance from live to dead (marking it, so that it learns
// its fate), then claims pending deaths for the caller. Claiming here, in the same atomic step
// as reading the dead set, means a death already finished is never claimed again.
export const SWEEP = `
local t = redis.call('TIME')
local cutoff = t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(ARGV[1])
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, 100)
for _, id in ipairs(stale) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('SADD', KEYS[2], id)
  redis.call('SET', ARGV[3] .. id, '1', 'PX', ARGV[2])
end
local claimed = {}
for _, id in ipairs(redis.call('SRANDMEMBER', KEYS[2], 20)) do
  if redis.call('SET', ARGV[4] .. id, ARGV[5], 'NX', 'PX', ARGV[6]) then table.insert(claimed, id) end
end
return claimed`;

// KEYS: claim of the dead instance. ARGV: claimant, claimMs. Extends a claim that is still ours.
export const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

// KEYS: claim of the dead instance, dead set. ARGV: dead id, claimant.
export const FINISH = `
if redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
return 0`;

// KEYS: live. ARGV: deadAfterMs. Returns the live ids.
export const LIVE = `
local t = redis.call('TIME')
local cutoff = t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. cutoff, '+inf')`;
