-- A worker's heartbeat (after registry.lua). KEYS: workers, stream. ARGV: group, worker, alive seconds, keep
-- seconds, then the entry ids it holds: it is alive, and the entries it holds are still being worked on (their
-- idle time starts again, so that no other worker claims them; JUSTID leaves their delivery count alone).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
beat(KEYS[1], ARGV[2], now, tonumber(ARGV[3]), tonumber(ARGV[4]), 0)
if #ARGV > 4 then
  local ids = {unpack(ARGV, 5, #ARGV)}
  ids[#ids + 1] = 'JUSTID'
  redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, unpack(ids))
end
return tostring(now)
