-- Push jobs onto a queue: each job and one notify entry, so a blocked worker wakes.
-- A pushed job starts at attempt 0: any count left in the attempts hash for the same bytes
-- (a failed job retried by `failed retry` is byte-identical to its first push) is dropped.
-- KEYS: 1 pending list, 2 notify list, 3 attempts hash
-- ARGV: the jobs
for i = 1, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  redis.call('RPUSH', KEYS[2], 1)
  redis.call('HDEL', KEYS[3], ARGV[i])
end
return redis.call('LLEN', KEYS[1])
