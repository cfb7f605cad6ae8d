"""The recorder's Lua scripts: read finished jobs, mark them recorded, trim, remove.

Every key a script touches is one of its KEYS, as Redis Cluster requires (a
script may only touch keys of its node, and the server checks declared ones):
a script never builds a key from a prefix. Where the jobs to touch are only known
inside Redis (the ids in a finished set or in the event stream), a first script
with the queue's keys finds them and a second one, given each job's keys, does
the work: `bullworker.history.script_calls` runs each pair as one call.

Each job's keys come in a stride of `JOB_STRIDE`: its hash, then its sub-keys
(`keys.JOB_SUBKEY_SUFFIXES`, the log list first). A deduplication key names a
job by an id kept in its hash, so it is only known after the hash is read: a
script that removes a job returns ``id, deid`` for it, and `DROP_DEDUP` then
deletes each such key if it still names that job.

A job is removed only if it is still the same finished job, unchanged since it
was read: same ``finishedOn`` (its score in the finished set), attempt count,
progress and log lines (`_KEPT_LOGS`'s mark). A job recorded and kept in Redis
carries the field `keys.RECORDED_FIELD` = ``<score>:<attempts>:<log mark>``.
"""

from __future__ import annotations

from bullworker.core import keys

#: Keys per job in a script's KEYS: the hash and its sub-keys, the log list first.
JOB_STRIDE = 1 + len(keys.JOB_SUBKEY_SUFFIXES)
assert keys.JOB_SUBKEY_SUFFIXES[0] == keys.LOGS_SUFFIX  # KEYS[k + 1] is the log list

#: The last ``keep`` log lines of a job and a mark of what the recorder keeps of
#: it: the length of its log list and a digest of its progress and of those
#: lines. A new line changes the mark even when BullMQ's ``keepLogs`` trims the
#: list to a constant length. ``logs_mark`` takes the job's ``progress`` field
#: when the caller read it already (false if absent).
_KEPT_LOGS = """
local no_logs_mark = "0:" .. string.sub(redis.sha1hex("0:"), 1, 16)

local function logs_mark(logs_key, keep, progress)
  local total = redis.call("LLEN", logs_key)
  progress = progress or ""
  if total == 0 and progress == "" then return {}, no_logs_mark end  -- most jobs: no digest
  local lines = {}
  if keep > 0 and total > 0 then lines = redis.call("LRANGE", logs_key, -keep, -1) end
  local parts = {#progress .. ":" .. progress}
  for i, text in ipairs(lines) do parts[i + 1] = #text .. ":" .. text end
  return lines, total .. ":" .. string.sub(redis.sha1hex(table.concat(parts)), 1, 16)
end

local function kept_logs(job_key, logs_key, keep)
  return logs_mark(logs_key, keep, redis.call("HGET", job_key, "progress"))
end
"""

#: Deletes a finished job (its hash and sub-keys: KEYS[k .. k + stride - 1]) and its set
#: member; a job with a deduplication id goes to ``dedup`` for `DROP_DEDUP`.
_DELETE_JOB = f"""
local function delete_job(set, id, k, deid, dedup)
  if deid then
    dedup[#dedup + 1] = id
    dedup[#dedup + 1] = deid
  end
  redis.call("ZREM", set, id)
  redis.call("DEL", unpack(KEYS, k, k + {JOB_STRIDE - 1}))
end
"""

#: First half of `script_calls.FetchNew`: which jobs a batch looks at. KEYS: completed set,
#: failed set, event stream. ARGV: batch size, cursor ("": start at the stream's end, and
#: scan), scan (1/0), most events read, where the scan of the completed and of the failed
#: set goes on (a score, "-inf", or "done"), most set members a scan looks at, then ids to
#: leave out (those of the batch being written while this one is read ahead).
#:
#: Returns ``{cursor, more, gap, scanned, resume completed, resume failed, {kind, status, id,
#: score, ...}}`` (flags 1/0): per candidate its kind ("e": named by a finished event, "g":
#: named by one but in no finished set, its score the event's ms; "s": found by the scan).
#: Events give at most a batch of candidates; a scan at most its budget.
FETCH_IDS = """
local limit, cursor, full, max_events = tonumber(ARGV[1]), ARGV[2], ARGV[3] == "1", tonumber(ARGV[4])
local sets = {completed = KEYS[1], failed = KEYS[2]}
local found, seen, n = {}, {}, 0
local more, gap, scanned = false, false, false
for i = 8, #ARGV do seen[ARGV[i]] = true end

local function add(kind, status, id, score)
  seen[id] = true
  n = n + 1
  found[#found + 1] = kind
  found[#found + 1] = status
  found[#found + 1] = id
  found[#found + 1] = score
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
    if n >= limit then more = true break end
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
          add("e", status, id, score)
        else
          add("g", f[2], id, string.match(entry[1], "^(%d+)-"))
        end
      end
    end
  end
  if #entries >= max_events then more = true end
end

local resume = {completed = ARGV[5], failed = ARGV[6]}
if (full or gap) and not more then
  local budget, stopped = tonumber(ARGV[7]), false
  for _, status in ipairs({"completed", "failed"}) do
    local offset = 0
    while not stopped and resume[status] ~= "done" do
      local chunk = redis.call("ZRANGEBYSCORE", sets[status], resume[status], "+inf",
        "WITHSCORES", "LIMIT", offset, 500)
      if #chunk == 0 then resume[status] = "done" break end
      for i = 1, #chunk, 2 do
        if budget <= 0 then
          stopped = true
          resume[status] = chunk[i + 1]
          break
        end
        budget = budget - 1
        if not seen[chunk[i]] then add("s", status, chunk[i], chunk[i + 1]) end
      end
      offset = offset + 500
    end
  end
  scanned = resume.completed == "done" and resume.failed == "done"
end
local function flag(b) return b and 1 or 0 end
-- The candidates nested, not unpacked: Lua unpacks at most ~8,000 values, and a scan's
-- budget of candidates is 4 values each.
return {cursor, flag(more), flag(gap), flag(scanned), resume.completed, resume.failed, found}
"""

#: Second half of `script_calls.FetchNew`: reads the candidates of `FETCH_IDS`, in order,
#: until a batch is full. KEYS: per candidate its hash and log list. ARGV: batch size, log
#: lines kept, recorded field, then `FETCH_IDS`'s reply as it came.
#:
#: ``{"cursor", "more", "gap", "scanned", "resume", "jobs": [[status, id, score, [field,
#: value, ...], [line, ...], mark], ...], "gone": [[status, id, ms, in_set], ...]}``:
#: ``more`` if events were left unread; ``gap`` if the stream lost entries after the
#: cursor; ``scanned`` if a scan has gone through both sets, else ``resume`` says where
#: it goes on (per set, a score or "-inf"/"done"); ``gone`` lists the finished jobs whose
#: hash is missing: still in their set (``in_set`` 1, ``ms`` the score) or named by an
#: event (``ms`` the event's time). cjson writes an empty list as ``{}``.
FETCH_PICK = (
    _KEPT_LOGS
    + """
local limit, keep, field = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local resume = {completed = ARGV[8], failed = ARGV[9]}
local scanned = ARGV[7] == "1"
local jobs, gone, moved, stopped = {}, {}, {}, false
for a = 10, #ARGV, 4 do
  local kind, status, id, score = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local k = (a - 10) / 2 + 1
  local job_key, logs_key = KEYS[k], KEYS[k + 1]
  if kind == "g" then
    if redis.call("EXISTS", job_key) == 0 then gone[#gone + 1] = {status, id, score, 0} end
  elseif kind == "s" and stopped then
    -- the batch is full: each set's scan goes on from its first candidate left
    if not moved[status] then resume[status], moved[status] = score, true end
  elseif kind == "s" and #jobs + #gone >= limit then
    resume[status], moved[status], stopped, scanned = score, true, true, false
  else
    local mark = redis.call("HGET", job_key, field)
    if not (mark and string.sub(mark, 1, #score + 1) == score .. ":") then
      local fields = redis.call("HGETALL", job_key)
      if #fields == 0 then
        gone[#gone + 1] = {status, id, score, 1}
      else
        local lines, log_mark = kept_logs(job_key, logs_key, keep)
        jobs[#jobs + 1] = {status, id, score, fields, lines, log_mark}
      end
    end
  end
end
return cjson.encode({cursor = ARGV[4], more = ARGV[5] == "1", gap = ARGV[6] == "1",
  scanned = scanned, resume = resume, jobs = jobs, gone = gone})
"""
)

#: After a batch's rows are committed: marks its jobs recorded (or removes them, for a
#: status kept 0), if each is unchanged since it was read; counts the lost jobs; stores
#: the cursor. KEYS: completed set, failed set, cursor key, lost-jobs hash, then per job
#: its `JOB_STRIDE` keys, then per gone job its hash. ARGV: remove completed at once
#: (1/0), remove failed at once, now (ms), recorded field, log lines kept, cursor ("":
#: unchanged), number of jobs, then per job: status, id, score, finishedOn, attempts, log
#: mark; then per gone job: status, id, in_set (1: drop its set member), lost (1: count
#: it). Returns {marked, removed, lost, id, deid, ...} (the ids and deids for `DROP_DEDUP`).
MARK_RECORDED = (
    _KEPT_LOGS
    + _DELETE_JOB
    + f"""
local sets = {{completed = KEYS[1], failed = KEYS[2]}}
local at_once = {{completed = ARGV[1] == "1", failed = ARGV[2] == "1"}}
local field, keep, n = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[7])
local marked, removed, lost, dedup = 0, 0, 0, {{}}
for j = 0, n - 1 do
  local a, k = 8 + j * 6, 5 + j * {JOB_STRIDE}
  local status, id, score = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local set, job_key = sets[status], KEYS[k]
  if redis.call("ZSCORE", set, id) == score then
    local f = redis.call("HMGET", job_key, "finishedOn", "atm", "attemptsMade", "deid", "progress")
    local attempts = f[2] or f[3] or "0"
    local _, now = logs_mark(KEYS[k + 1], keep, f[5])
    if f[1] == ARGV[a + 3] and attempts == ARGV[a + 4] and now == ARGV[a + 5] then
      if at_once[status] then
        delete_job(set, id, k, f[4], dedup)
        removed = removed + 1
      else
        redis.call("HSET", job_key, field, score .. ":" .. attempts .. ":" .. now)
        marked = marked + 1
      end
    end
  end
end
local g = 5 + n * {JOB_STRIDE}
for a = 8 + n * 6, #ARGV, 4 do
  local status, id = ARGV[a], ARGV[a + 1]
  if redis.call("EXISTS", KEYS[g]) == 0 then
    if ARGV[a + 2] == "1" then redis.call("ZREM", sets[status], id) end
    if ARGV[a + 3] == "1" then
      redis.call("HINCRBY", KEYS[4], status, 1)
      redis.call("HSET", KEYS[4], "lastJob", id, "lastStatus", status, "lastAt", ARGV[3])
      lost = lost + 1
    end
  end
  g = g + 1
end
if ARGV[6] ~= "" then redis.call("SET", KEYS[3], ARGV[6]) end
return {{marked, removed, lost, unpack(dedup)}}
"""
)

#: First half of `script_calls.TrimKept`: the recorded jobs that may be beyond the keep
#: window: past the newest ``count`` of their set, or finished before the cutoff; at most
#: ``limit`` per set. KEYS: completed set, failed set. ARGV: limit, then per set (completed,
#: failed): count kept, cutoff score ("" for no age bound). Returns {n completed, {id, ...}}.
TRIM_IDS = """
local limit, found = tonumber(ARGV[1]), {}
local counts = {}
for s, set in ipairs({KEYS[1], KEYS[2]}) do
  local count, cutoff = tonumber(ARGV[s * 2]), ARGV[1 + s * 2]
  local ids, seen, n = {}, {}, 0
  local excess = redis.call("ZCARD", set) - count
  if excess > 0 then ids = redis.call("ZRANGE", set, 0, math.min(excess, limit) - 1) end
  if cutoff ~= "" then
    for _, id in ipairs(redis.call("ZRANGEBYSCORE", set, "-inf", "(" .. cutoff, "LIMIT", 0, limit)) do
      ids[#ids + 1] = id
    end
  end
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      found[#found + 1] = id
      n = n + 1
    end
  end
  counts[s] = n
end
return {counts[1], found}
"""

#: Second half of `script_calls.TrimKept`: removes those jobs whose recorded run is still
#: the one in Redis, unchanged; a job that changed since (a log line, its progress) loses
#: its mark, to be recorded again. KEYS: completed set, failed set, then per job its
#: `JOB_STRIDE` keys. ARGV: log lines kept, recorded field, number of completed jobs, then
#: the ids. Returns {removed, unmarked, id, deid, ...}.
TRIM_APPLY = (
    _KEPT_LOGS
    + _DELETE_JOB
    + f"""
local keep, field, n_completed = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local removed, unmarked, dedup = 0, 0, {{}}
for a = 4, #ARGV do
  local id, k = ARGV[a], 3 + (a - 4) * {JOB_STRIDE}
  local set = a - 4 < n_completed and KEYS[1] or KEYS[2]
  local job_key = KEYS[k]
  local f = redis.call("HMGET", job_key, field, "atm", "attemptsMade", "deid", "progress",
    "finishedOn")
  if f[1] then
    -- Its finishedOn is its score (BullMQ writes both): the run that was recorded?
    local score, attempts, logs = string.match(f[1], "^([^:]*):([^:]*):(.*)$")
    if score == f[6] or score == redis.call("ZSCORE", set, id) then
      local _, now = logs_mark(KEYS[k + 1], keep, f[5])
      if (f[2] or f[3] or "0") == attempts and now == logs then
        delete_job(set, id, k, f[4], dedup)
        removed = removed + 1
      else
        redis.call("HDEL", job_key, field)
        unmarked = unmarked + 1
      end
    end
  end
end
return {{removed, unmarked, unpack(dedup)}}
"""
)

#: Deletes deduplication keys that still name the job that was removed. KEYS: the keys.
#: ARGV: per key, the id of the removed job.
DROP_DEDUP = """
for i, key in ipairs(KEYS) do
  if redis.call("GET", key) == ARGV[i] then redis.call("DEL", key) end
end
return #KEYS
"""
