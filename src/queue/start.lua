-- Mark reserved jobs as started, just before they run: from now on a dead worker's
-- reservation charges them an attempt (pop.lua), and only them, not the rest of its batch.
-- Only reservations still ours (same deadline score) are marked.
-- KEYS: 1 reserved zset, 2 started set
-- ARGV: pairs of (job, deadline_ms)
-- Returns how many were marked.
local n = #ARGV / 2
local jobs = {}
for i = 1, n do jobs[i] = ARGV[2 * i - 1] end
local scores = redis.call('ZMSCORE', KEYS[1], unpack(jobs))
local ours = {}
for i = 1, n do
  if scores[i] and tonumber(scores[i]) == tonumber(ARGV[2 * i]) then ours[#ours + 1] = jobs[i] end
end
if #ours > 0 then redis.call('SADD', KEYS[2], unpack(ours)) end
return #ours
