-- KEYS: attempts, errors, failed, stream, done. ARGV: group, max deliveries, entry id, volume, error.
-- A crawl of the volume failed: requeue it for another delivery, or dead-letter it once it has had enough.
local group, most, id, volume, err = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
redis.call('XACK', KEYS[4], group, id)
if redis.call('SISMEMBER', KEYS[5], volume) == 1 then return 'skip' end
redis.call('HSET', KEYS[2], volume, err)
if tonumber(redis.call('HGET', KEYS[1], volume) or '0') >= most then
  redis.call('HSET', KEYS[3], volume, err)
  return 'dead'
end
redis.call('XADD', KEYS[4], '*', 'v', volume)
return 'requeued'
