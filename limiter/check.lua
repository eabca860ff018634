-- Tollgate limiter: a batch of operations from one gateway replica, run atomically.
--
-- ARGV[1] is a little-endian binary blob of operations; KEYS are their keys in the
-- order the operations use them. Rate buckets are GCRA: the key holds the
-- theoretical arrival time (TAT) in microseconds of Redis's own clock, so replicas
-- with skewed clocks agree. Concurrency buckets are sorted sets of leases scored by
-- their expiry, so a replica that dies holding slots leaks them only until then.
--
-- op 1, take:    B nb, then per bucket B kind and
--                  kind 1 (rate):        d interval_us, d tau_us, d cost
--                  kind 2 (concurrency): d cap, d lease_us, c8 member
--                all buckets or none; replies B ok, B refusing bucket (1-based),
--                d retry_us, then per bucket d remaining, d reset_us.
-- op 2, adjust:  d interval_us, d delta  (settle a rate bucket; no reply)
-- op 3, release: c8 member               (free a concurrency slot; no reply)
local blob = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pos, ki, no = 1, 0, 0
local out = {}
local unpack, pack, call = struct.unpack, struct.pack, redis.call
local floor, ceil = math.floor, math.ceil

local function store(key, tat)
  if tat > now then
    call('SET', key, string.format('%.17g', tat), 'PX', ceil((tat - now) / 1000) + 1)
  else
    call('DEL', key)
  end
end

local function tat_of(key)
  local v = tonumber(call('GET', key))
  if v == nil or v < now then
    return now
  end
  return v
end

local n = #blob
while pos <= n do
  local op
  op, pos = unpack('<B', blob, pos)
  if op == 1 then
    local nb
    nb, pos = unpack('<B', blob, pos)
    local keys, kinds, a, b, c, m, cur = {}, {}, {}, {}, {}, {}, {}
    local ok, ref, retry = 1, 0, 0
    for i = 1, nb do
      ki = ki + 1
      local key = KEYS[ki]
      local kind
      kind, pos = unpack('<B', blob, pos)
      keys[i], kinds[i] = key, kind
      if kind == 1 then
        a[i], b[i], c[i], pos = unpack('<ddd', blob, pos)
        cur[i] = tat_of(key)
        local over = cur[i] + c[i] * a[i] - now - b[i]
        if over > 0 then
          ok = 0
          if over > retry then
            retry, ref = over, i
          end
        end
      else
        a[i], b[i], m[i], pos = unpack('<ddc8', blob, pos)
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
    local rec = {}
    for i = 1, nb do
      if kinds[i] == 1 then
        local tat = cur[i]
        if ok == 1 then
          tat = tat + c[i] * a[i]
          store(keys[i], tat)
        end
        local rem = floor((b[i] - (tat - now)) / a[i])
        if rem < 0 then rem = 0 end
        rec[i] = pack('<dd', rem, tat - now)
      else
        local used = cur[i]
        if ok == 1 then
          call('ZADD', keys[i], now + b[i], m[i])
          call('PEXPIRE', keys[i], ceil(b[i] / 1000) + 1000)
          used = used + 1
        end
        local rem = a[i] - used
        if rem < 0 then rem = 0 end
        rec[i] = pack('<dd', rem, 0)
      end
    end
    no = no + 1
    out[no] = pack('<BBd', ok, ref, retry) .. table.concat(rec)
  elseif op == 2 then
    ki = ki + 1
    local interval, delta
    interval, delta, pos = unpack('<dd', blob, pos)
    local key = KEYS[ki]
    local tat = tat_of(key) + delta * interval
    if tat < now then tat = now end
    store(key, tat)
  elseif op == 3 then
    ki = ki + 1
    local member
    member, pos = unpack('<c8', blob, pos)
    call('ZREM', KEYS[ki], member)
  else
    return redis.error_reply('tollgate limiter: unknown op ' .. tostring(op))
  end
end
return table.concat(out)
