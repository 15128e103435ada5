-- KEYS: attempts, done, failed, errors, stream. ARGV: group, max deliveries, then (entry id, volume, seen) triples.
-- Counts a delivery of each entry and decides: crawl it; skip it (finished already); dead-letter it (delivered
-- too often); or requeue it (this worker has had it before and cannot crawl it again: let another try).
local group, most = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV, 3 do
  local id, volume, seen = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('SISMEMBER', KEYS[2], volume) == 1 or redis.call('HEXISTS', KEYS[3], volume) == 1 then
    redis.call('XACK', KEYS[5], group, id)
    out[#out + 1] = 'skip'
  else
    local n = redis.call('HINCRBY', KEYS[1], volume, 1)
    if n > most then
      local err = redis.call('HGET', KEYS[4], volume) or ('not completed in ' .. most .. ' deliveries')
      redis.call('HSET', KEYS[3], volume, err)
      redis.call('XACK', KEYS[5], group, id)
      out[#out + 1] = 'dead'
    elseif seen == '1' then
      redis.call('XACK', KEYS[5], group, id)
      redis.call('XADD', KEYS[5], '*', 'v', volume)
      out[#out + 1] = 'requeued'
    else
      out[#out + 1] = 'crawl'
    end
  end
end
return out
