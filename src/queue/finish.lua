-- Finish reserved jobs: acknowledge, or move to delayed for a retry.
-- A reservation is only ours while its deadline score is the one we were given: a job whose
-- reservation expired and was handed to another worker is left alone (that worker owns it).
-- KEYS: 1 reserved zset, 2 delayed zset, 3 attempts hash
-- ARGV: triples of (job, deadline_ms, delay_ms); delay_ms < 0 means done (ack).
-- Returns how many reservations were still ours.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owned = 0
for i = 1, #ARGV, 3 do
  local job, deadline, delay = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local score = redis.call('ZSCORE', KEYS[1], job)
  if score and tonumber(score) == tonumber(deadline) then
    owned = owned + 1
    redis.call('ZREM', KEYS[1], job)
    if delay < 0 then
      redis.call('HDEL', KEYS[3], job)
    else
      redis.call('ZADD', KEYS[2], now + delay, job)
    end
  end
end
return owned
