-- Requeue dead-lettered volumes: each gets a fresh count of deliveries; the job is no longer finished (its keys
-- no longer expire). KEYS: failed, attempts, stream, finished, then the job's other keys. ARGV: the volumes
-- (none: every dead-lettered one). Returns the volumes requeued.
local volumes = ARGV
if #volumes == 0 then volumes = redis.call('HKEYS', KEYS[1]) end
local requeued = {}
for _, volume in ipairs(volumes) do
  if redis.call('HDEL', KEYS[1], volume) == 1 then
    redis.call('HDEL', KEYS[2], volume)
    redis.call('XADD', KEYS[3], '*', 'v', volume)
    requeued[#requeued + 1] = volume
  end
end
if #requeued > 0 then
  redis.call('DEL', KEYS[4])
  for i = 1, #KEYS do redis.call('PERSIST', KEYS[i]) end
end
return requeued
