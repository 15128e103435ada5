-- The shared quota: Redis keeps the state, Python's RateDiscovery decides the rate (sent back as `concluded`).
-- KEYS: 1 the quota's hash, 2 the registry of processes using it.
-- ARGV: 1 process id, 2 tokens wanted (a lease), 3 tokens given back, 4 their epoch, 5 ok answers,
--   6 throttled answers, 7 their longest latency (s), 8 the first one's time (Redis clock), 9 the round they
--   were counted for, 10 tell (1: this process was told ARGV 11), 11 the cap told (requests/s, 0 = none),
--   12 burst, 13 pause every process this long (s, 0 = no), 14 heartbeat (1/0), 15 alive (s), 16 ttl (s),
--   17 the round the policy concluded ('' = none), 18 the rate it chose, 19 its state, 20 void the leases (1/0),
--   21 stale (s): a round with no answer for this long restarts, 22 now ('' = Redis's TIME; tests only),
--   23 the last answer's time (Redis clock).
-- Reply: epoch, rate (0 = none), cap (0 = none), now, since (start of the round), round, processes alive
--   (this one included once it has sent a heartbeat), pause (until), lease base (the first token's slot), tokens leased, tolerance (s),
--   the policy's state, the round's reports in order, then the round's answers per process as field, value pairs
--   (o: t: g: f: l: + process).
local key, procs = KEYS[1], KEYS[2]
local proc, wanted, returned, returned_epoch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ok, thr, lag, first, counted_for = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]),
  ARGV[9]
local tell, told, burst, pause_for = ARGV[10] == '1', tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local heartbeat, alive, ttl = ARGV[14] == '1', tonumber(ARGV[15]), tonumber(ARGV[16])
local concluded, new_rate, new_policy, void = ARGV[17], tonumber(ARGV[18]), ARGV[19], ARGV[20] == '1'
local stale, last_answer = tonumber(ARGV[21]), tonumber(ARGV[23])

local function num(x) return string.format('%.17g', x) end

local now
if ARGV[22] ~= '' then
  now = tonumber(ARGV[22])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local NUMBERS = {'tat', 'rate', 'cap', 'since', 'round', 'epoch', 'pause'}
local flat = redis.call('HGETALL', key)
local s, fields = {policy = '', batches = ''}, {}
for i = 1, #flat, 2 do
  local name, value = flat[i], flat[i + 1]
  if name == 'policy' or name == 'batches' then
    s[name] = value
  elseif string.find(name, ':', 1, true) then
    fields[name] = value
  else
    s[name] = tonumber(value)
  end
end
for _, name in ipairs(NUMBERS) do s[name] = s[name] or 0 end
local dirty, removed = false, {}

local function restart_round()
  s.round, s.since, s.batches = s.round + 1, now, ''
  for name in pairs(fields) do removed[#removed + 1] = name end
  fields = {}
  dirty = true
end

local function set_rate(rate, voided)
  if s.cap > 0 and (rate == 0 or rate > s.cap) then rate = s.cap end
  if voided or (s.rate == 0) ~= (rate == 0) then
    -- Leases granted at the old rate are void; the bucket restarts empty (no burst) at the new one, unless
    -- nothing was sent at the old one lately.
    s.epoch = s.epoch + 1
    if s.rate > 0 and s.tat > now then s.tat = now + ((s.cap > 0 and rate > 0) and (burst - 1) / rate or 0) end
  end
  s.rate = rate
  restart_round()
end

-- Every call learns how many processes share the rate: a lease is spread at the share of the processes alive now.
local processes
if heartbeat then
  processes = beat(procs, proc, now, alive, alive, ttl)
else
  processes = redis.call('ZCOUNT', procs, now - alive, '+inf')
end

if tell and (told ~= s.cap or processes <= 1) then
  -- A told rate, raised or lowered, is in force at once; the same one again too when a new run starts.
  -- Told nothing (discovering), the rate in force stays: discovery goes on from it.
  s.cap = told
  if told > 0 then
    s.policy = ''
    set_rate(told, true)
  else
    restart_round()
  end
elseif concluded ~= '' and concluded == num(s.round) then
  s.policy = new_policy
  set_rate(new_rate, void)
end

-- No answer for `stale` seconds (an idle gap, a run that ended mid-round): the round restarts, since answers
-- that far apart say nothing about the rate.
local last = 0
for name, value in pairs(fields) do
  if string.sub(name, 1, 2) == 'l:' then last = math.max(last, tonumber(value)) end
end
if last > 0 and now - last > stale then
  local fresh = counted_for == num(s.round) and first > last
  restart_round()
  -- Answers that all came after the gap belong to the new round.
  if fresh then counted_for = num(s.round) end
end

if pause_for > 0 and now + pause_for > s.pause then
  s.pause = now + pause_for
  s.epoch = s.epoch + 1
  restart_round()
end
if returned > 0 and returned_epoch == s.epoch and s.rate > 0 and s.tat > now then
  s.tat = math.max(now, s.tat - returned / s.rate)
  dirty = true
end

if ok + thr > 0 and counted_for == num(s.round) then
  local function put(prefix, value, how)
    local name = prefix .. proc
    local old = tonumber(fields[name])
    if old == nil then
      fields[name] = value
    elseif how == 'sum' then
      fields[name] = old + value
    elseif how == 'max' then
      fields[name] = math.max(old, value)
    else
      fields[name] = math.min(old, value)
    end
  end
  put('o:', ok, 'sum')
  put('t:', thr, 'sum')
  put('g:', lag, 'max')
  put('f:', first, 'min')
  put('l:', last_answer, 'max')
  -- The reports in the order they came: the policy hears them in that order (ok, throttled, first, last, lag).
  s.batches = s.batches .. string.format('%d,%d,%.17g,%.17g,%.17g;', ok, thr, first, last_answer, lag)
  dirty = true
end

local base, leased, tolerance = 0, 0, 0
if wanted > 0 and s.rate > 0 then
  local interval = 1 / s.rate
  -- A told quota allows its burst; a discovered rate is paced evenly (a burst only finds the server's).
  if s.cap > 0 then tolerance = (burst - 1) * interval end
  base = math.max(s.tat, now)
  if s.pause > now then base = math.max(base, s.pause + tolerance) end
  leased = wanted
  s.tat = base + leased * interval
  dirty = true
end

local reply = {s.epoch, num(s.rate), num(s.cap), num(now), num(s.since), num(s.round), processes, num(s.pause),
  num(base), leased, num(tolerance), s.policy, s.batches}
if dirty then
  local out = {}
  for _, name in ipairs(NUMBERS) do
    out[#out + 1] = name
    out[#out + 1] = num(s[name])
  end
  out[#out + 1] = 'policy'
  out[#out + 1] = s.policy
  out[#out + 1] = 'batches'
  out[#out + 1] = s.batches
  for name, value in pairs(fields) do
    out[#out + 1] = name
    out[#out + 1] = num(tonumber(value))
  end
  redis.call('HSET', key, unpack(out))
  local gone = {}
  for _, name in ipairs(removed) do
    if fields[name] == nil then gone[#gone + 1] = name end
  end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
end
if heartbeat then redis.call('EXPIRE', key, ttl) end
for name, value in pairs(fields) do
  reply[#reply + 1] = name
  reply[#reply + 1] = num(tonumber(value))
end
return reply
