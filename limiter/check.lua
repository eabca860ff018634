-- Tollgate limiter: a batch of operations from one gateway replica, run atomically.
--
-- ARGV[1] is a little-endian binary blob of operations; KEYS are the distinct keys
-- they use, each named once however many operations touch it, and every operation
-- names its key by a 1-based index H into KEYS. Rate buckets are GCRA: the key holds the
-- theoretical arrival time (TAT) in microseconds of Redis's own clock, so replicas
-- with skewed clocks agree, and the interval it was charged at (see below).
-- Concurrency buckets are sorted sets of leases scored by their expiry, so a replica
-- that dies holding slots leaks them only until then; a live replica's heartbeat
-- renews the leases of its requests in flight, and adds back those Redis lost
-- (lease.go).
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
-- op 2, adjust:  H key, d interval_us, d tau_us, d delta
--                settle a rate bucket (tau_us: the span of the settling rule's
--                bucket); no reply
-- op 3, release: H key, c8 member               (free a concurrency slot; no reply)
-- op 4, if ran:  H marker, H at, H key, d interval_us, d tau_us, d delta
--                adjust, as op 2, only if byte at of the marker is 1 (the failed call
--                ran and admitted that bucket's check), and set it to 2: applied once
-- op 5, fence:   H marker
--
-- Markers: a call that carries takes names its marker as its last key, the marker's
-- lifetime in ms as ARGV[2] and as ARGV[3] the time after which its answer may come
-- too late for the gateway (half way to its deadline, on this clock). It refuses to
-- run if the marker exists; run after ARGV[3] (a stalled or overloaded Redis), it
-- sets the marker to a byte per bucket it checked ('1' admitted, '0' refused). A call
-- run in time leaves none: a key per call would cost more than the rest of it. The
-- gateway reads nothing of it unless the call's answer is lost (a timeout): then,
-- once Redis answers again, it fences the marker (ops 4 and 5 set an absent one to
-- '-', so a call still on its way never runs, and keep a present one FENCE_MS) and
-- takes back or trues up what the call charged (op 4).
--
-- A call without a marker (ARGV[2] is 0) carries takes where the marker cannot go: a
-- Redis Cluster slot being migrated serves a call only if all its keys are on the
-- node, and a marker hardly ever exists. Where a marked call would set its marker,
-- after ARGV[3], such a call refuses to run (TGLATE) and writes nothing: one that
-- ran did so in time, one that did not never will, and neither needs a fence.
--
-- A batch often touches one bucket many times (a hot API key, a settlement next to
-- the same key's next check), so rate buckets are read once into a table and written
-- once at the end: SET with an expiry is the most expensive call here.
--
-- The table holds each bucket's debt, TAT - now, not its TAT: now is ~6e13 us, where
-- doubles step by 2^-7 us, so (TAT + cost * interval) - now would round on every
-- charge and a bucket filled to exactly its burst would come out a few steps over
-- it. The debt is small, exact when read (TAT and now are close) and rounded once,
-- when written back. slack covers that rounding and the debt's own: a charge over
-- the bucket by no more than slack is admitted, and counts as fitting.
--
-- A rate key's value is the TAT (%.17g), then a NUL and the span of the bucket its debt
-- was charged under, then a NUL and the interval it was charged at (little-endian
-- doubles, the interval last where the previous version wrote and reads it alone):
-- a reload that changes a limit's amount or burst keeps the bucket (its key leaves
-- amounts out), and its debt is converted to the new interval keeping the units owed,
-- up to the new bucket's span (rescale). Read in time at the new rate, a spent bucket
-- would be refilled by a lowered limit, and a client held back longer by a raised one
-- than either limit would; kept in units past the new span, a client that spent
-- 600/hour would wait ten hours at 60/hour. Redis's Lua (5.1) reads a number only up
-- to a NUL, so tonumber reads the TAT of such a value, here and in the previous
-- versions of this script, which wrote the TAT alone, then the TAT and the interval; a
-- value without the interval reads as charged at the interval of the rule that reads
-- it, as they read it, and one without the span as all overdraft (kept in units or in
-- time, whichever is shorter). Replicas of these versions thus share the keys through
-- a rolling upgrade. The interval and span are binary, packed once per pair in a call
-- (tails): parsing and formatting them as text cost a call about a sixth more.
-- A debt that a conversion capped to the new bucket's span (rescale) has a NUL and
-- 'c' between the TAT and the span; the versions that read the span read past them.
-- Before those, a capped value may hold what the cap let go (lets): a NUL, 'f' and
-- four little-endian doubles, which the versions that read the mark read past too (a
-- value without them let nothing go that this version knows of).
local blob = ARGV[1]
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local pos, no = 1, 0
local out = {}
local sunpack, pack, call = struct.unpack, struct.pack, redis.call
local floor, ceil = math.floor, math.ceil
local byte, fmt = string.byte, string.format
local debts, scales, spans, capped, lets, tails, dirty, ndirty = {}, {}, {}, {}, {}, {}, {}, 0
local late = ARGV[3] and now >= tonumber(ARGV[3])
if late and ARGV[2] == '0' then
  return redis.error_reply('TGLATE this call reached Redis past the time it was to run by')
end
local mark = ARGV[2] and ARGV[2] ~= '0' and KEYS[#KEYS]
local marking = mark and late
local oks, nok = {}, 0
-- The mark of a capped debt, and its byte as the value's 19th from the end; the byte
-- that starts what its cap let go, the value's 53rd from the end.
local CAPPED_MARK, CAPPED, LET = '\0c', 99, 102
-- How long a fenced marker stays: longer than a call can take to reach Redis, and
-- than a request answered without Redis takes to settle its true-up.
local FENCE_MS = 900000
-- Two rounding steps of now and 2^8 of a bucket's span (256 operations fit in a call).
local slack_now, slack_span = now * 2 ^ -49, 2 ^ -44

-- One MGET reads every key of the batch (a concurrency key, a sorted set, reads as
-- nil): a call per bucket costs more than the command itself.
if #KEYS > 0 then
  local vals = call('MGET', unpack(KEYS))
  for i = 1, #KEYS do
    local v = vals[i]
    local tat = tonumber(v)
    if tat and tat > now then
      local k = KEYS[i]
      debts[k] = tat - now
      if byte(v, -9) == 0 then
        if byte(v, -18) == 0 then
          spans[k], scales[k] = sunpack('<dxd', v, #v - 16)
          if byte(v, -19) == CAPPED and byte(v, -20) == 0 then
            capped[k] = true
            if byte(v, -53) == LET and byte(v, -54) == 0 then
              local f, o, civ, ctau = sunpack('<dddd', v, #v - 51)
              lets[k] = {f, o, civ, ctau}
            end
          end
        else
          scales[k] = sunpack('<d', v, #v - 7)
        end
      end
    else
      debts[KEYS[i]] = 0
    end
  end
  if mark and vals[#KEYS] then
    return redis.error_reply('TGFENCED this call ran already or was given up on')
  end
end

-- A debt is held to ten years (in microseconds): a bucket that far behind takes
-- nothing for as long as matters, and a longer one would overflow the key's PX and
-- the Retry-After computed from it.
local MAX_DEBT = 315576000000000
local function touch(key)
  if not dirty[key] then
    dirty[key] = true
    ndirty = ndirty + 1
    dirty[ndirty] = key
  end
end
local function set_debt(key, debt)
  if debt > MAX_DEBT then debt = MAX_DEBT end
  if debts[key] ~= debt then
    debts[key] = debt
    touch(key)
  end
end

-- rescale converts key's debt to the bucket a take charges, interval iv and span tau,
-- as memory.go's rescale: the units it owes, up to the new span, of which the old
-- span's worth (a spent bucket) at most empties the new bucket, and an overdraft past
-- it is kept in units or in time, whichever is shorter (never longer than the old rule
-- would hold the client). A debt read without its interval (written by an earlier
-- version) is taken as charged at iv, one without its span as all overdraft.
--
-- The conversion is written back even when the take is refused, so that the bucket
-- refills at its new rate from then on: converted again at every check, a debt the
-- new span capped read as a full bucket until the old debt, refilling at the old
-- rate, owed less than the new bucket holds (54 minutes lowering a spent 600/hour to
-- 60/hour), each refusal's retry-after a refill of the new rate. What the cap let go
-- is let go under the new limit only: the bucket is marked capped, and a capped debt
-- read under another limit (a replica still on the old one during a rolling reload,
-- or a later reload) keeps the units the bucket had free, never more, so that the
-- old limit cannot spend them again.
--
-- The cap also records what it let go (lets[key]): the units of the spent bucket
-- beyond the new one, and the units of the overdraft (owed beyond the old bucket),
-- which a lowered rate keeps in time, so fewer of them; and which rule's take
-- converted the debt. A request admitted before the reload settles later under its
-- own rule (adjust), and its refund must leave the bucket as it would have left it
-- settled before: the refund takes the overdraft's units off first, each worth what
-- the conversion kept of it, then what the cap let go, which the bucket no longer
-- owes, and only then the bucket's own units. Taken off the capped debt alone, 3000
-- of 6000 tokens refunded after a reload to 600/hour freed the whole spent bucket.
local function rescale(key, iv, tau)
  local sc = scales[key]
  if sc then
    local debt, span = debts[key], spans[key] or 0
    local r = iv / sc
    local spent = debt < span and debt or span
    local d
    if capped[key] then
      d = tau - (span - spent) * r
      if d < 0 then d = 0 end
    else
      d = spent * r
      if d > tau then
        lets[key] = {(d - tau) / iv, (debt - spent) / sc, iv, tau}
        d = tau
        capped[key] = true
      end
    end
    if r < 1 then d = d + (debt - spent) * r else d = d + (debt - spent) end
    if d > MAX_DEBT then d = MAX_DEBT end
    debts[key] = d
    touch(key)
  end
  scales[key], spans[key] = iv, tau
end

-- refund is the part of a refund of u units, settled under a rule of interval iv
-- other than the one whose take capped key's debt, that comes off the bucket, in
-- units: the overdraft's units at the conversion come first, each worth what the
-- conversion kept of it in the capping rule's units (less than one under a lowered
-- rate, which kept the overdraft in time), then the units the cap let go, worth
-- nothing to the bucket, then the rest, whole. With nothing left of either, the
-- refunds have undone the cap, as if they had settled before it: the bucket is no
-- longer capped, and one that a take under another rule read since (a replica still
-- on the old limit, a reload raising it again) owes, within its bucket, what the
-- capping rule read, converted back as owed, and the rest of the refund comes off
-- that: left marked, a raise back to 6000/hour would find the room that 600/hour left
-- (300 tokens) where the same refund settled before the reload leaves 300 owed and
-- 5700 free. An overdraft charged since stays as charged: moved to the capping rule
-- and back it would be kept in time one way and in units the other, and 9900 tokens
-- overdrawn at 6000/hour came back as 990. What is let go only ever shrinks after
-- the cap, and goes when the bucket is full (adjust, and the key's expiry).
local function refund(key, let, iv, u)
  local cut = 0
  local o = let[2]
  if o > 0 then
    local a = u < o and u or o
    let[2], u = o - a, u - a
    local m = iv / let[3]
    cut = m < 1 and a * m or a
  end
  local f = let[1]
  if u > 0 and f > 0 then
    local b = u < f and u or f
    let[1], u = f - b, u - b
  end
  if let[1] <= 0 and let[2] <= 0 then
    lets[key] = nil
    -- Settlements' conversions keep the capping rule's bucket, in other units.
    local sc, span, debt = scales[key], spans[key], debts[key]
    local held, burst = span / sc, let[4] / let[3]
    if held - burst > burst * slack_span or burst - held > burst * slack_span then
      local spent = debt < span and debt or span
      debts[key] = spent
      rescale(key, let[3], let[4])
      capped[key] = false
      rescale(key, sc, span)
      debts[key] = debts[key] + (debt - spent)
    else
      capped[key] = false
    end
  end
  touch(key)
  return cut + u
end

-- adjust settles delta units of key under a rule of interval iv whose bucket spans
-- tau. A key that owes nothing (full, or gone from Redis as full: a long request
-- settles after its charge refilled) owes it under no rule: what the settlement
-- charges is charged under the settling rule's bucket, whose span it records, as a
-- take's debt records its own. Without it a later reload would read the whole debt
-- as overdraft (rescale) and, lowering the rate, keep it in time, not in units. A
-- refund under a rule other than the one whose take capped the debt is a request's
-- admitted before the cap (refund); one under that rule, a request's it admitted.
local function adjust(key, iv, tau, delta)
  local let = lets[key]
  if debts[key] == 0 then
    scales[key], spans[key], capped[key], lets[key], let = iv, tau, false, nil, nil
  elseif let and delta < 0 and (iv ~= let[3] or tau ~= let[4]) then
    delta = -refund(key, let, iv, -delta)
  end
  local sc = scales[key]
  local debt = debts[key]
  if sc == nil then
    scales[key] = iv
    debt = debt + delta * iv
  elseif sc ~= iv and debt > 0 then
    -- A take under another rule converted the bucket (a request admitted before a
    -- reload, settled after a check under the new limit): it stays on that rule, so
    -- that what it owes refills at that rule's rate, as it does settled before the
    -- check (memory.go's settleOn). A refund gives back units of the bucket; a charge
    -- fills the bucket in units, and an overdraft past it is kept in units or in
    -- time, whichever is shorter (rescale). The charge counts as settled before the
    -- check and then converted: the units the settling rule's bucket still had room
    -- for past the filled bucket are let go, as the conversion lets go a spent bucket
    -- beyond the new one (capped, lets), and only an overdraft of that bucket is
    -- kept in time: counted all as overdraft, 10000 tokens used of 100 estimated
    -- under 6000/hour held a client lowered to 600/hour 94 minutes, not 40.
    if delta < 0 then
      debt = debt + delta * sc
    else
      local span = spans[key] or 0
      local room = span - debt
      if room < 0 then room = 0 end
      local fill = room / sc
      if fill > delta then fill = delta end
      -- What the settling rule's bucket owed: the units of this one, what its cap
      -- let go, and an overdraft past it, kept at the settling rule's rate.
      local owed = (debt < span and debt or span) / sc
      if debt > span then owed = owed + (debt - span) / iv end
      if let then owed = owed + let[1] end
      local fit = tau / iv - owed
      if fit > delta then fit = delta end
      if fit < fill then fit = fill end
      debt = debt + fill * sc + (delta - fit) * (iv < sc and iv or sc)
      if fit > fill or (delta > fit and iv < sc) then
        if not let then
          let = {0, 0, sc, span}
          lets[key] = let
        end
        let[1], let[2] = let[1] + (fit - fill), let[2] + (delta - fit)
        capped[key] = true
      end
    end
  else
    debt = debt + delta * iv
  end
  if debt <= 0 then
    -- Full: owes nothing under no rule, as its key, deleted, reads in the next call.
    debt = 0
    capped[key], lets[key] = false, nil
  end
  set_debt(key, debt)
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
        if scales[key] ~= a[i] or spans[key] ~= b[i] then
          rescale(key, a[i], b[i])
        end
        cur[i] = debts[key]
        local over = cur[i] + c[i] * a[i] - b[i]
        -- A charge of nothing fits even a bucket in debt (a spend budget overdrawn
        -- still lets a call to a free backend through).
        if c[i] > 0 and over > slack_now + b[i] * slack_span then
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
    if marking then
      local ch = ok == 1 and '1' or '0'
      for _ = 1, nb do
        nok = nok + 1
        oks[nok] = ch
      end
    end
    for i = 1, nb do
      local rem, reset
      local granted = 0
      if kinds[i] == 1 then
        local debt = cur[i]
        local slack = slack_now + b[i] * slack_span
        if ok == 1 then
          debt = debt + c[i] * a[i]
          local want = sunpack('<d', m[i])
          if want > 0 then
            local free = floor((b[i] / 2 - debt + slack) / a[i])
            if free > 0 then
              granted = want
              if free < granted then granted = free end
              debt = debt + granted * a[i]
            end
          end
          set_debt(keys[i], debt)
        end
        rem, reset = floor((b[i] - debt + slack) / a[i]), debt
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
    local ki, interval, tau, delta
    ki, interval, tau, delta, pos = sunpack('<Hddd', blob, pos)
    adjust(KEYS[ki], interval, tau, delta)
  elseif op == 3 then
    local ki, member
    ki, member, pos = sunpack('<Hc8', blob, pos)
    call('ZREM', KEYS[ki], member)
  elseif op == 4 or op == 5 then
    local mi
    mi, pos = sunpack('<H', blob, pos)
    local mk = KEYS[mi]
    local v = call('GET', mk)
    if v then
      call('PEXPIRE', mk, FENCE_MS)
    else
      call('SET', mk, '-', 'PX', FENCE_MS)
    end
    if op == 4 then
      local at, ki, interval, tau, delta
      at, ki, interval, tau, delta, pos = sunpack('<HHddd', blob, pos)
      if v and string.byte(v, at) == 49 then
        call('SETRANGE', mk, at - 1, '2')
        adjust(KEYS[ki], interval, tau, delta)
      end
    end
  else
    return redis.error_reply('tollgate limiter: unknown op ' .. tostring(op))
  end
end

for i = 1, ndirty do
  local key = dirty[i]
  local debt = debts[key]
  if debt > 0 then
    local iv, span = scales[key], spans[key] or 0
    local byspan = tails[iv]
    if not byspan then
      byspan = {}
      tails[iv] = byspan
    end
    local tail = byspan[span]
    if not tail then
      tail = pack('<BdBd', 0, span, 0, iv)
      byspan[span] = tail
    end
    if capped[key] then
      tail = CAPPED_MARK .. tail
      local let = lets[key]
      if let then
        tail = pack('<BBdddd', 0, LET, let[1], let[2], let[3], let[4]) .. tail
      end
    end
    call('SET', key, fmt('%.17g', now + debt) .. tail, 'PX', ceil(debt / 1000) + 1)
  else
    call('DEL', key)
  end
end
if marking then
  call('SET', mark, table.concat(oks), 'PX', ARGV[2])
end
return table.concat(out)
