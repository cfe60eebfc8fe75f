-- Finish reserved jobs: acknowledge, retry later, or hand back untouched.
-- A reservation is only ours while its deadline score is the one we were given: a job whose
-- reservation expired and was handed to another worker is left alone (that worker owns it).
-- KEYS: 1 reserved zset, 2 delayed zset, 3 attempts hash, 4 pending list, 5 notify list,
--       6 started set, 7 this minute's stats hash
-- ARGV: 1-4 the batch's tally for the stats (done, failed, retried, run time in ms), then
-- triples of (job, deadline_ms, action); action is 'ack' (done: forget it), 'release'
-- (never started: back to the head of pending, no attempt used), or a delay in ms (a failed
-- attempt, used up: into delayed until then).
-- Returns how many reservations were still ours.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Per-minute counters for the dashboard's chart: bounded by their expiry (two hours).
local tally = {'done', 'failed', 'retried', 'runtime_ms'}
local counted = false
for i = 1, 4 do
  local v = tonumber(ARGV[i])
  if v and v > 0 then
    redis.call('HINCRBY', KEYS[7], tally[i], v)
    counted = true
  end
end
if counted then redis.call('PEXPIRE', KEYS[7], 7200000) end
local H = 4
local n = (#ARGV - H) / 3
local jobs = {}
for i = 1, n do jobs[i] = ARGV[H + 3 * i - 2] end
-- One look-up for the whole batch (ZMSCORE needs Redis 6.2).
if n == 0 then return 0 end
local scores = redis.call('ZMSCORE', KEYS[1], unpack(jobs))
local owned, acked, released = {}, {}, {}
for i = 1, n do
  local job, action = jobs[i], ARGV[H + 3 * i]
  if scores[i] and tonumber(scores[i]) == tonumber(ARGV[H + 3 * i - 1]) then
    owned[#owned + 1] = job
    if action == 'ack' then
      acked[#acked + 1] = job
    elseif action == 'release' then
      released[#released + 1] = job
    else
      redis.call('ZADD', KEYS[2], now + tonumber(action), job)
      redis.call('HINCRBY', KEYS[3], job, 1)
    end
  end
end
if #owned > 0 then
  redis.call('ZREM', KEYS[1], unpack(owned))
  redis.call('SREM', KEYS[6], unpack(owned))
end
if #acked > 0 then redis.call('HDEL', KEYS[3], unpack(acked)) end
-- Handed back in reverse, so LPUSH leaves them at the head in their original order.
for i = #released, 1, -1 do
  redis.call('LPUSH', KEYS[4], released[i])
  redis.call('RPUSH', KEYS[5], 1)
end
return #owned
