"""The recorder's Lua scripts: read finished jobs, mark them recorded, trim, remove.

One script call reads what a batch needs (`FETCH_NEW`), one marks the recorded
jobs and counts the lost ones (`MARK_RECORDED`), one removes the recorded jobs
that fell out of the keep window (`TRIM_KEPT`). `bullworker queues` records and
removes given jobs with `FETCH_JOBS` and `REMOVE_RECORDED`.

A job is removed only if it is still the same finished job, unchanged since it
was read: same ``finishedOn`` (its score in the finished set), attempt count,
progress and log lines (`_KEPT_LOGS`'s mark). A job recorded and kept in Redis
carries the field `keys.RECORDED_FIELD` = ``<score>:<attempts>:<log mark>``.
"""

from __future__ import annotations

from bullworker.core import keys

#: The sub-keys of a job as a Lua table literal (``{":logs", ...}``).
_SUFFIXES = "{" + ", ".join(f'"{s}"' for s in keys.JOB_SUBKEY_SUFFIXES) + "}"

#: The last ``keep`` log lines of a job and a mark of what the recorder keeps of
#: it: the length of its log list and a digest of its progress and of those
#: lines. A new line changes the mark even when BullMQ's ``keepLogs`` trims the
#: list to a constant length. (``:logs`` is `keys.LOGS_SUFFIX`.) ``logs_mark`` takes
#: the job's ``progress`` field when the caller read it already (false if absent).
_KEPT_LOGS = """
local no_logs_mark = "0:" .. string.sub(redis.sha1hex("0:"), 1, 16)

local function logs_mark(job_key, keep, progress)
  local logs_key = job_key .. ":logs"
  local total = redis.call("LLEN", logs_key)
  progress = progress or ""
  if total == 0 and progress == "" then return {}, no_logs_mark end  -- most jobs: no digest
  local lines = {}
  if keep > 0 and total > 0 then lines = redis.call("LRANGE", logs_key, -keep, -1) end
  local parts = {#progress .. ":" .. progress}
  for i, text in ipairs(lines) do parts[i + 1] = #text .. ":" .. text end
  return lines, total .. ":" .. string.sub(redis.sha1hex(table.concat(parts)), 1, 16)
end

local function kept_logs(job_key, keep)
  return logs_mark(job_key, keep, redis.call("HGET", job_key, "progress"))
end
"""

#: Deletes a finished job: its hash and sub-keys, its set member and the deduplication
#: key that still names it.
_DELETE_JOB = f"""
local function delete_job(set, id, job_key, dedup_prefix, deid)
  if deid then
    local dedup = dedup_prefix .. deid
    if redis.call("GET", dedup) == id then redis.call("DEL", dedup) end
  end
  redis.call("ZREM", set, id)
  local doomed = {{job_key}}
  for _, suffix in ipairs({_SUFFIXES}) do doomed[#doomed + 1] = job_key .. suffix end
  redis.call("DEL", unpack(doomed))
end
"""

#: The jobs of a batch, as one JSON string: what finished since the cursor in the
#: queue's event stream and, with a scan, the jobs of the finished sets not recorded
#: for their current run, oldest first. KEYS: completed set, failed set, event stream.
#: ARGV: job key prefix, batch size, log lines kept, cursor ("" for none: start at the
#: stream's end, and scan), scan (1/0), most events read, recorded field, where the
#: scan of the completed and of the failed set goes on (a score; "-inf": from the start;
#: "done": that set is scanned), most set members a scan looks at in this call.
#:
#: ``{"cursor", "more", "gap", "scanned", "resume", "jobs": [[status, id, score, [field,
#: value, ...], [line, ...], mark], ...], "gone": [[status, id, ms, in_set], ...]}``:
#: ``more`` if events were left unread; ``gap`` if the stream lost entries after the
#: cursor; ``scanned`` if a scan has gone through both sets, else ``resume`` says where
#: it goes on (per set, as the arguments); ``gone`` lists the finished jobs whose hash is missing: still in their set
#: (``in_set`` 1, ``ms`` the score) or named by an event (``ms`` the event's time).
#: cjson writes an empty list as ``{}``.
FETCH_NEW = (
    _KEPT_LOGS
    + """
local prefix, limit, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cursor, full, max_events, field = ARGV[4], ARGV[5] == "1", tonumber(ARGV[6]), ARGV[7]
local sets = {completed = KEYS[1], failed = KEYS[2]}
local jobs, gone, seen = {}, {}, {}
local more, gap, scanned = false, false, false

local function full_batch() return #jobs + #gone >= limit end

local function pick(status, id, score)
  if seen[id] then return end
  seen[id] = true
  local job_key = prefix .. id
  local mark = redis.call("HGET", job_key, field)
  if mark and string.sub(mark, 1, #score + 1) == score .. ":" then return end
  local fields = redis.call("HGETALL", job_key)
  if #fields == 0 then
    gone[#gone + 1] = {status, id, score, 1}
    return
  end
  local lines, log_mark = kept_logs(job_key, keep)
  jobs[#jobs + 1] = {status, id, score, fields, lines, log_mark}
end

local function split(id)
  local ms, seq = string.match(id, "^(%d+)-(%d+)$")
  return tonumber(ms), tonumber(seq)
end

if cursor == "" then
  local last = redis.call("XREVRANGE", KEYS[3], "+", "-", "COUNT", 1)
  cursor = last[1] and last[1][1] or "0-0"
  full = true
else
  local ms, seq = split(cursor)
  local first = redis.call("XRANGE", KEYS[3], "-", "+", "COUNT", 1)
  if first[1] and cursor ~= "0-0" then
    local first_ms, first_seq = split(first[1][1])
    if first_ms > ms or (first_ms == ms and first_seq > seq + 1) then gap = true end
  end
  local start = string.match(cursor, "^(%d+)-") .. "-" .. tostring(seq + 1)
  local entries = redis.call("XRANGE", KEYS[3], start, "+", "COUNT", max_events)
  for _, entry in ipairs(entries) do
    if full_batch() then more = true break end
    cursor = entry[1]
    local f = entry[2]
    if f[1] == "event" and (f[2] == "completed" or f[2] == "failed") then
      local id
      for i = 3, #f - 1, 2 do if f[i] == "jobId" then id = f[i + 1] break end end
      if id and not seen[id] then
        local status = "completed"
        local score = redis.call("ZSCORE", KEYS[1], id)
        if not score then status, score = "failed", redis.call("ZSCORE", KEYS[2], id) end
        if score then
          pick(status, id, score)
        elseif redis.call("EXISTS", prefix .. id) == 0 then
          seen[id] = true
          gone[#gone + 1] = {f[2], id, string.match(entry[1], "^(%d+)-"), 0}
        end
      end
    end
  end
  if #entries >= max_events then more = true end
end

local resume = {completed = ARGV[8], failed = ARGV[9]}
if (full or gap) and not more then
  local budget, stopped = tonumber(ARGV[10]), false
  for _, status in ipairs({"completed", "failed"}) do
    local offset = 0
    while not stopped and resume[status] ~= "done" do
      local chunk = redis.call("ZRANGEBYSCORE", sets[status], resume[status], "+inf",
        "WITHSCORES", "LIMIT", offset, 500)
      if #chunk == 0 then resume[status] = "done" break end
      for i = 1, #chunk, 2 do
        if full_batch() or budget <= 0 then
          stopped = true
          resume[status] = chunk[i + 1]
          break
        end
        budget = budget - 1
        pick(status, chunk[i], chunk[i + 1])
      end
      offset = offset + 500
    end
  end
  scanned = resume.completed == "done" and resume.failed == "done"
end
return cjson.encode({cursor = cursor, more = more, gap = gap, scanned = scanned,
  resume = resume, jobs = jobs, gone = gone})
"""
)

#: After a batch's rows are committed: marks its jobs recorded (or removes them, for a
#: status kept 0), if each is unchanged since it was read; counts the lost jobs; stores
#: the cursor. KEYS: completed set, failed set, cursor key, lost-jobs hash. ARGV: job key
#: prefix, dedup prefix, log lines kept, cursor ("": unchanged), remove completed at once
#: (1/0), remove failed at once, now (ms), recorded field, number of jobs, then per job:
#: status, id, score, finishedOn, attempts, log mark; then per gone job: status, id,
#: in_set (1: drop its set member), lost (1: count it). Returns {marked, removed, lost}.
MARK_RECORDED = (
    _KEPT_LOGS
    + _DELETE_JOB
    + """
local prefix, dedup_prefix, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
local sets = {completed = KEYS[1], failed = KEYS[2]}
local at_once = {completed = ARGV[5] == "1", failed = ARGV[6] == "1"}
local field, n = ARGV[8], tonumber(ARGV[9])
local marked, removed, lost = 0, 0, 0
for j = 0, n - 1 do
  local a = 10 + j * 6
  local status, id, score = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local set, job_key = sets[status], prefix .. ARGV[a + 1]
  if redis.call("ZSCORE", set, id) == score then
    local f = redis.call("HMGET", job_key, "finishedOn", "atm", "attemptsMade", "deid", "progress")
    local attempts = f[2] or f[3] or "0"
    local _, now = logs_mark(job_key, keep, f[5])
    if f[1] == ARGV[a + 3] and attempts == ARGV[a + 4] and now == ARGV[a + 5] then
      if at_once[status] then
        delete_job(set, id, job_key, dedup_prefix, f[4])
        removed = removed + 1
      else
        redis.call("HSET", job_key, field, score .. ":" .. attempts .. ":" .. now)
        marked = marked + 1
      end
    end
  end
end
for a = 10 + n * 6, #ARGV, 4 do
  local status, id = ARGV[a], ARGV[a + 1]
  if redis.call("EXISTS", prefix .. id) == 0 then
    if ARGV[a + 2] == "1" then redis.call("ZREM", sets[status], id) end
    if ARGV[a + 3] == "1" then
      redis.call("HINCRBY", KEYS[4], status, 1)
      redis.call("HSET", KEYS[4], "lastJob", id, "lastStatus", status, "lastAt", ARGV[7])
      lost = lost + 1
    end
  end
end
if ARGV[4] ~= "" then redis.call("SET", KEYS[3], ARGV[4]) end
return {marked, removed, lost}
"""
)

#: Removes the recorded jobs beyond the keep window: past the newest ``count`` of their
#: set, or finished before the cutoff; at most ``limit`` looked at per set. A job whose
#: run is recorded but that changed since (a log line, its progress) loses its mark, to
#: be recorded again. KEYS: completed set, failed set. ARGV: job key prefix, dedup prefix,
#: log lines kept, limit, recorded field, then per set (completed, failed): count kept,
#: cutoff score ("" for no age bound). Returns {removed, unmarked}.
TRIM_KEPT = (
    _KEPT_LOGS
    + _DELETE_JOB
    + """
local prefix, dedup_prefix, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
local limit, field = tonumber(ARGV[4]), ARGV[5]
local removed, unmarked = 0, 0
for s, set in ipairs({KEYS[1], KEYS[2]}) do
  local count, cutoff = tonumber(ARGV[4 + s * 2]), ARGV[5 + s * 2]
  local ids, seen = {}, {}
  local excess = redis.call("ZCARD", set) - count
  if excess > 0 then ids = redis.call("ZRANGE", set, 0, math.min(excess, limit) - 1) end
  if cutoff ~= "" then
    for _, id in ipairs(redis.call("ZRANGEBYSCORE", set, "-inf", "(" .. cutoff, "LIMIT", 0, limit)) do
      ids[#ids + 1] = id
    end
  end
  for _, id in ipairs(ids) do
    local job_key = prefix .. id
    local f = not seen[id] and redis.call("HMGET", job_key, field, "atm", "attemptsMade", "deid",
      "progress", "finishedOn")
    seen[id] = true
    if f and f[1] then
      -- Its finishedOn is its score (BullMQ writes both): the run that was recorded?
      local score, attempts, logs = string.match(f[1], "^([^:]*):([^:]*):(.*)$")
      if score == f[6] or score == redis.call("ZSCORE", set, id) then
        local _, now = logs_mark(job_key, keep, f[5])
        if (f[2] or f[3] or "0") == attempts and now == logs then
          delete_job(set, id, job_key, dedup_prefix, f[4])
          removed = removed + 1
        else
          redis.call("HDEL", job_key, field)
          unmarked = unmarked + 1
        end
      end
    end
  end
end
return {removed, unmarked}
"""
)

#: Per finished set, how many jobs are not recorded for their current run and the
#: score (finishedOn) of the oldest of them: ``{n_completed, oldest_completed,
#: n_failed, oldest_failed}`` ("" when none). Only the oldest ``cap`` members of a set
#: are looked at: the newer ones (a backlog, when the database is down) count as not
#: recorded. KEYS: completed set, failed set. ARGV: job key prefix, recorded field, cap.
UNRECORDED = """
local cap = tonumber(ARGV[3])
local found = {}
for _, set in ipairs(KEYS) do
  local count, oldest, start = 0, "", 0
  while start < cap do
    local chunk = redis.call("ZRANGE", set, start, math.min(start + 499, cap - 1), "WITHSCORES")
    if #chunk == 0 then break end
    for i = 1, #chunk, 2 do
      local mark = redis.call("HGET", ARGV[1] .. chunk[i], ARGV[2])
      if not (mark and string.sub(mark, 1, #chunk[i + 1] + 1) == chunk[i + 1] .. ":") then
        count = count + 1
        if oldest == "" then oldest = chunk[i + 1] end
      end
    end
    start = start + 500
  end
  local beyond = redis.call("ZCARD", set) - cap
  if beyond > 0 then
    count = count + beyond
    if oldest == "" then oldest = redis.call("ZRANGE", set, cap, cap, "WITHSCORES")[2] end
  end
  found[#found + 1] = count
  found[#found + 1] = oldest
end
return found
"""

#: `FETCH_NEW`'s jobs for the given ids of a set (``bullworker queues`` records what it
#: removes), as ``[[id, [field, value, ...], [line, ...], mark], ...]``. KEYS: finished
#: set. ARGV: job key prefix, log lines kept, then the job ids; ids not in the set are
#: left out. An empty reply is ``{}`` (cjson's empty table).
FETCH_JOBS = (
    _KEPT_LOGS
    + """
local keep = tonumber(ARGV[2])
local found = {}
for i = 3, #ARGV do
  if redis.call("ZSCORE", KEYS[1], ARGV[i]) then
    local lines, mark = kept_logs(ARGV[1] .. ARGV[i], keep)
    found[#found + 1] = {ARGV[i], redis.call("HGETALL", ARGV[1] .. ARGV[i]), lines, mark}
  end
end
return cjson.encode(found)
"""
)

#: Removes one recorded job if it is still in its set, unchanged (same
#: finishedOn, attempts and log mark): 1 removed, 0 not in the set, -1 changed.
_REMOVE_ONE = (
    _KEPT_LOGS
    + """
local function remove_one(set, id, finished, attempts, mark, keep, dedup_prefix, job_keys)
  if not redis.call("ZSCORE", set, id) then return 0 end
  local f = redis.call("HMGET", job_keys[1], "finishedOn", "atm", "attemptsMade", "deid")
  if f[1] ~= finished or (f[2] or f[3] or "0") ~= attempts then return -1 end
  local _, now = kept_logs(job_keys[1], keep)
  if now ~= mark then return -1 end
  if f[4] then
    local dedup = dedup_prefix .. f[4]
    if redis.call("GET", dedup) == id then redis.call("DEL", dedup) end
  end
  redis.call("ZREM", set, id)
  redis.call("DEL", unpack(job_keys))
  return 1
end
"""
)

#: Removes one recorded job if it is unchanged. KEYS: finished set, job hash,
#: then the job's sub-keys. ARGV: job id, finishedOn, attempts, log mark, dedup
#: prefix, log lines kept.
REMOVE_IF_UNCHANGED = (
    _REMOVE_ONE
    + "return remove_one(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[6]), "
    + "ARGV[5], {unpack(KEYS, 2)})"
)

#: The same for a batch in one call; returns how many were removed. KEYS:
#: finished set, then per job its hash and sub-keys (``_REMOVE_STRIDE`` keys).
#: ARGV: dedup prefix, log lines kept, then per job: id, finishedOn, attempts, log mark.
_REMOVE_STRIDE = 1 + len(keys.JOB_SUBKEY_SUFFIXES)
REMOVE_RECORDED = (
    _REMOVE_ONE
    + f"""
local removed = 0
local keep = tonumber(ARGV[2])
for j = 0, (#ARGV - 2) / 4 - 1 do
  local first = 2 + j * {_REMOVE_STRIDE}
  local job_keys = {{unpack(KEYS, first, first + {_REMOVE_STRIDE - 1})}}
  local a = 3 + j * 4
  if remove_one(KEYS[1], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], keep, ARGV[1], job_keys)
    == 1 then removed = removed + 1 end
end
return removed
"""
)
