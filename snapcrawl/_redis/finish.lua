-- A job whose list is complete (sealed) and whose every volume is done or dead-lettered is finished: all its keys
-- expire after ARGV[1] seconds. KEYS: volumes, done, failed, sealed, finished, then the job's other keys.
-- Returns 1 if the job is finished (the expiry set or renewed), 0 if not yet.
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
if redis.call('SCARD', KEYS[2]) + redis.call('HLEN', KEYS[3]) < redis.call('SCARD', KEYS[1]) then return 0 end
local t = redis.call('TIME')
redis.call('SET', KEYS[5], t[1], 'NX')
for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[1])) end
return 1
