-- A job's volumes. KEYS: volumes (every id ever enqueued), stream. ARGV: volume ids.
-- Adds each id never enqueued before; returns how many.
local added = 0
for _, volume in ipairs(ARGV) do
  if redis.call('SADD', KEYS[1], volume) == 1 then
    redis.call('XADD', KEYS[2], '*', 'v', volume)
    added = added + 1
  end
end
return added
