-- Tollgate limiter: a batch of operations from one gateway replica, run atomically.
--
-- ARGV[1] is a little-endian binary blob of operations; KEYS are the distinct keys
-- they use, each named once however many operations touch it, and every operation
-- names its key by a 1-based index H into KEYS. Rate buckets are GCRA: the key holds the
-- theoretical arrival time (TAT) in microseconds of Redis's own clock, so replicas
-- with skewed clocks agree. Concurrency buckets are sorted sets of leases scored by
-- their expiry, so a replica that dies holding slots leaks them only until then.
--
-- op 1, take:    B nb, then per bucket B kind, H key, d, d, d, c8:
--                  kind 1 (rate):        interval_us, tau_us, cost, d prefetch
--                  kind 2 (concurrency): cap, lease_us, (unused), member
--                all buckets or none; replies B ok, B refusing bucket (1-based),
--                d retry_us, then per bucket d remaining, d reset_us, d granted.
--                An admitted take also grants up to prefetch units of each rate
--                bucket for the replica to answer later requests from, but only out
--                of the upper half of the bucket: near its limit every request is
--                decided here, one by one.
-- op 2, adjust:  H key, d interval_us, d delta  (settle a rate bucket; no reply)
-- op 3, release: H key, c8 member               (free a concurrency slot; no reply)
--
-- A batch often touches one bucket many times (a hot API key, a settlement next to
-- the same key's next check), so rate buckets are read once into a table and written
-- once at the end: SET with an expiry is the most expensive call here.
local blob = ARGV[1]
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local pos, no = 1, 0
local out = {}
local sunpack, pack, call = struct.unpack, struct.pack, redis.call
local floor, ceil = math.floor, math.ceil
local tats, dirty, ndirty = {}, {}, 0

-- One MGET reads every key of the batch (a concurrency key, a sorted set, reads as
-- nil): a call per bucket costs more than the command itself.
if #KEYS > 0 then
  local vals = call('MGET', unpack(KEYS))
  for i = 1, #KEYS do
    tats[KEYS[i]] = tonumber(vals[i]) or 0
  end
end

local function tat_of(key)
  local v = tats[key]
  if v < now then
    return now
  end
  return v
end

local function set_tat(key, tat)
  if tats[key] ~= tat then
    tats[key] = tat
    if not dirty[key] then
      dirty[key] = true
      ndirty = ndirty + 1
      dirty[ndirty] = key
    end
  end
end

-- Scratch per take, reused: a batch holds hundreds of takes.
local keys, kinds, a, b, c, m, cur = {}, {}, {}, {}, {}, {}, {}

local n = #blob
while pos <= n do
  local op
  op, pos = sunpack('<B', blob, pos)
  if op == 1 then
    local nb
    nb, pos = sunpack('<B', blob, pos)
    local ok, ref, retry = 1, 0, 0
    for i = 1, nb do
      local ki
      kinds[i], ki, a[i], b[i], c[i], m[i], pos = sunpack('<BHdddc8', blob, pos)
      local key = KEYS[ki]
      keys[i] = key
      if kinds[i] == 1 then
        cur[i] = tat_of(key)
        local over = cur[i] + c[i] * a[i] - now - b[i]
        if over > 0 then
          ok = 0
          if over > retry then
            retry, ref = over, i
          end
        end
      else
        call('ZREMRANGEBYSCORE', key, '-inf', now)
        cur[i] = call('ZCARD', key)
        if cur[i] >= a[i] then
          ok = 0
          -- A slot frees when a request ends, which nothing here can predict; one
          -- second is the hint clients get unless a rate bucket knows better.
          if retry < 1000000 then
            retry, ref = 1000000, i
          end
        end
      end
    end
    no = no + 1
    out[no] = pack('<BBd', ok, ref, retry)
    for i = 1, nb do
      local rem, reset
      local granted = 0
      if kinds[i] == 1 then
        local tat = cur[i]
        if ok == 1 then
          tat = tat + c[i] * a[i]
          local want = sunpack('<d', m[i])
          if want > 0 then
            local free = floor((b[i] / 2 - (tat - now)) / a[i])
            if free > 0 then
              granted = want
              if free < granted then granted = free end
              tat = tat + granted * a[i]
            end
          end
          set_tat(keys[i], tat)
        end
        rem, reset = floor((b[i] - (tat - now)) / a[i]), tat - now
      else
        local used = cur[i]
        if ok == 1 then
          call('ZADD', keys[i], now + b[i], m[i])
          call('PEXPIRE', keys[i], ceil(b[i] / 1000) + 1000)
          used = used + 1
        end
        rem, reset = a[i] - used, 0
      end
      if rem < 0 then rem = 0 end
      no = no + 1
      out[no] = pack('<ddd', rem, reset, granted)
    end
  elseif op == 2 then
    local ki, interval, delta
    ki, interval, delta, pos = sunpack('<Hdd', blob, pos)
    local key = KEYS[ki]
    local tat = tat_of(key) + delta * interval
    if tat < now then tat = now end
    set_tat(key, tat)
  elseif op == 3 then
    local ki, member
    ki, member, pos = sunpack('<Hc8', blob, pos)
    call('ZREM', KEYS[ki], member)
  else
    return redis.error_reply('tollgate limiter: unknown op ' .. tostring(op))
  end
end

for i = 1, ndirty do
  local key = dirty[i]
  local tat = tats[key]
  if tat > now then
    call('SET', key, string.format('%.17g', tat), 'PX', ceil((tat - now) / 1000) + 1)
  else
    call('DEL', key)
  end
end
return table.concat(out)
