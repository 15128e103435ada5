-- A registry of live members: a sorted set scored by the Redis time of each member's last heartbeat.
-- Entries older than `keep` seconds are dropped; the members alive are those seen in the last `alive` seconds.
-- `ttl` > 0 makes the set expire with the state it belongs to. Returns how many are alive.
local function beat(registry, member, now, alive, keep, ttl)
  redis.call('ZADD', registry, now, member)
  redis.call('ZREMRANGEBYSCORE', registry, '-inf', now - keep)
  if ttl > 0 then redis.call('EXPIRE', registry, ttl) end
  return redis.call('ZCOUNT', registry, now - alive, '+inf')
end
