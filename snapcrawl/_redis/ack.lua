-- KEYS: stream, done. ARGV: group, then (entry id, volume) pairs. The volumes' snapshots are committed.
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('SADD', KEYS[2], ARGV[i + 1])
end
return #ARGV / 2
