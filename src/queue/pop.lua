-- Reserve up to ARGV[2] jobs from one queue, atomically.
-- KEYS: 1 pending list, 2 delayed zset, 3 reserved zset, 4 notify list, 5 attempts hash
-- ARGV: 1 retry_after in ms, 2 how many jobs at most, 3 notify entries the caller already took
-- Returns {now_ms, next_due_ms or -1, {job, ...}, {attempts, ...}, {deadline, ...}}.
-- Time comes from the Redis server, so workers on machines with skewed clocks agree.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Due delayed jobs and reservations whose worker died go back to pending, each with a
-- notify entry so a blocked worker wakes. Bounded per call so one call never stalls Redis.
local function migrate(from)
  local due = redis.call('ZRANGEBYSCORE', from, '-inf', now, 'LIMIT', 0, 1000)
  for i = 1, #due, 100 do
    local chunk = {unpack(due, i, math.min(i + 99, #due))}
    redis.call('ZREM', from, unpack(chunk))
    redis.call('RPUSH', KEYS[1], unpack(chunk))
    for _ = 1, #chunk do redis.call('RPUSH', KEYS[4], 1) end
  end
end
migrate(KEYS[2])
migrate(KEYS[3])

local jobs = redis.call('LPOP', KEYS[1], tonumber(ARGV[2]))
local attempts, deadlines = {}, {}
if jobs then
  local deadline = now + tonumber(ARGV[1])
  for i, job in ipairs(jobs) do
    redis.call('ZADD', KEYS[3], deadline, job)
    attempts[i] = redis.call('HINCRBY', KEYS[5], job, 1)
    deadlines[i] = deadline
  end
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
return {now, next_due, jobs, attempts, deadlines}
