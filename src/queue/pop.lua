-- Reserve up to ARGV[2] jobs from one queue, atomically.
-- KEYS: 1 pending list, 2 delayed zset, 3 reserved zset, 4 notify list, 5 attempts hash,
--       6 started set
-- ARGV: 1 retry_after in ms, 2 how many jobs at most (<= 1000), 3 notify entries the caller
--       already took
-- Returns {now_ms, next_due_ms or -1, {job, ...}, {attempt, ...}, deadline_ms}.
--
-- Time comes from the Redis server, so workers on machines with skewed clocks agree.
-- The attempts hash counts attempts used up (failed, or cut short by a dead worker); a job
-- absent from it has used none, so the common first attempt writes nothing there. Each
-- command below takes the whole batch at once: per job it costs set and hash insertions,
-- not commands.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Due delayed jobs, and reservations whose worker died, go back to pending, each with a
-- notify entry so a blocked worker wakes. A dead worker's job used up its attempt only if it
-- had started (it is in the started set): the rest of its batch never ran, and costs nothing.
-- Bounded per call so one call never stalls Redis.
local function migrate(from, dead_worker)
  local due = redis.call('ZRANGEBYSCORE', from, '-inf', now, 'LIMIT', 0, 1000)
  for i = 1, #due, 100 do
    local chunk = {unpack(due, i, math.min(i + 99, #due))}
    redis.call('ZREM', from, unpack(chunk))
    redis.call('RPUSH', KEYS[1], unpack(chunk))
    local ones = {}
    for j = 1, #chunk do ones[j] = 1 end
    redis.call('RPUSH', KEYS[4], unpack(ones))
    if dead_worker then
      local started = redis.call('SMISMEMBER', KEYS[6], unpack(chunk))
      for j = 1, #chunk do
        if started[j] == 1 then redis.call('HINCRBY', KEYS[5], chunk[j], 1) end
      end
      redis.call('SREM', KEYS[6], unpack(chunk))
    end
  end
end
migrate(KEYS[2], false)
migrate(KEYS[3], true)

local deadline = now + tonumber(ARGV[1])
local jobs = redis.call('LPOP', KEYS[1], tonumber(ARGV[2]))
local attempts = {}
if jobs then
  local scored = {}
  for i, job in ipairs(jobs) do
    scored[2 * i - 1] = deadline
    scored[2 * i] = job
  end
  redis.call('ZADD', KEYS[3], unpack(scored))
  local used = redis.call('HMGET', KEYS[5], unpack(jobs))
  for i = 1, #jobs do attempts[i] = (tonumber(used[i]) or 0) + 1 end
  local extra = #jobs - tonumber(ARGV[3])
  if extra > 0 then redis.call('LPOP', KEYS[4], extra) end
else
  jobs = {}
end

-- The earliest time a delayed or reserved job becomes due, so an idle worker can bound its wait.
local next_due = -1
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local score = tonumber(first[2])
    if next_due < 0 or score < next_due then next_due = score end
  end
end
return {now, next_due, jobs, attempts, deadline}
