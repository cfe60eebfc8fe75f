-- Finish reserved jobs: acknowledge, retry later, or hand back untouched.
-- A reservation is only ours while its deadline score is the one we were given: a job whose
-- reservation expired and was handed to another worker is left alone (that worker owns it).
-- KEYS: 1 reserved zset, 2 delayed zset, 3 attempts hash, 4 pending list, 5 notify list
-- ARGV: triples of (job, deadline_ms, action); action is 'ack' (done: forget it), 'release'
-- (never started: back to the head of pending, its attempt not counted), or a delay in ms
-- (a failed attempt: into delayed until then).
-- Returns how many reservations were still ours.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owned = 0
for i = 1, #ARGV, 3 do
  local job, deadline, action = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local score = redis.call('ZSCORE', KEYS[1], job)
  if score and tonumber(score) == tonumber(deadline) then
    owned = owned + 1
    redis.call('ZREM', KEYS[1], job)
    if action == 'ack' then
      redis.call('HDEL', KEYS[3], job)
    elseif action == 'release' then
      redis.call('HINCRBY', KEYS[3], job, -1)
      redis.call('LPUSH', KEYS[4], job)
      redis.call('RPUSH', KEYS[5], 1)
    else
      redis.call('ZADD', KEYS[2], now + tonumber(action), job)
    end
  end
end
return owned
