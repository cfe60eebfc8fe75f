-- Push jobs onto a queue: each job and one notify entry, so a blocked worker wakes.
-- KEYS: 1 pending list, 2 notify list
-- ARGV: the jobs
for i = 1, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  redis.call('RPUSH', KEYS[2], 1)
end
return redis.call('LLEN', KEYS[1])
