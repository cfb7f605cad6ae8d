"""Lua scripts on given finished jobs (``bullworker queues``) and the recording backlog.

As in `bullworker.history.scripts`, every key a script touches is one of its
KEYS (Redis Cluster); `bullworker.history.script_calls` builds them.
"""

from __future__ import annotations

from bullworker.history.scripts import _KEPT_LOGS, JOB_STRIDE

#: `FETCH_NEW`'s jobs for the given ids of a set (``bullworker queues`` records what it
#: removes), as ``[[id, [field, value, ...], [line, ...], mark], ...]``. KEYS: finished
#: set, then per id its hash and log list. ARGV: log lines kept, then the job ids; ids not
#: in the set are left out. An empty reply is ``{}`` (cjson's empty table).
FETCH_JOBS = (
    _KEPT_LOGS
    + """
local keep = tonumber(ARGV[1])
local found = {}
for i = 2, #ARGV do
  if redis.call("ZSCORE", KEYS[1], ARGV[i]) then
    local job_key, logs_key = KEYS[2 * i - 2], KEYS[2 * i - 1]
    local lines, mark = kept_logs(job_key, logs_key, keep)
    found[#found + 1] = {ARGV[i], redis.call("HGETALL", job_key), lines, mark}
  end
end
return cjson.encode(found)
"""
)

#: Removes recorded jobs if each is still in its set, unchanged (same finishedOn,
#: attempts and log mark). KEYS: finished set, then per job its `JOB_STRIDE` keys. ARGV:
#: log lines kept, then per job: id, finishedOn, attempts, log mark. Returns {removed,
#: the last job's outcome (1 removed, 0 not in the set, -1 changed), id, deid, ...}.
REMOVE_RECORDED = (
    _KEPT_LOGS
    + f"""
local keep, removed, outcome, dedup = tonumber(ARGV[1]), 0, 0, {{}}
for a = 2, #ARGV, 4 do
  local id, k = ARGV[a], 2 + (a - 2) / 4 * {JOB_STRIDE}
  local job_key = KEYS[k]
  outcome = 0
  if redis.call("ZSCORE", KEYS[1], id) then
    outcome = -1
    local f = redis.call("HMGET", job_key, "finishedOn", "atm", "attemptsMade", "deid")
    if f[1] == ARGV[a + 1] and (f[2] or f[3] or "0") == ARGV[a + 2] then
      local _, now = kept_logs(job_key, KEYS[k + 1], keep)
      if now == ARGV[a + 3] then
        if f[4] then
          dedup[#dedup + 1] = id
          dedup[#dedup + 1] = f[4]
        end
        redis.call("ZREM", KEYS[1], id)
        redis.call("DEL", unpack(KEYS, k, k + {JOB_STRIDE - 1}))
        removed, outcome = removed + 1, 1
      end
    end
  end
end
return {{removed, outcome, unpack(dedup)}}
"""
)

#: First half of `script_calls.recording_backlog_counts`: the oldest ``cap`` members of
#: each finished set. KEYS: completed set, failed set. ARGV: cap. Returns per set (completed,
#: failed) {members looked at, members beyond the cap, score of the oldest beyond ("" when
#: none)}, then the members looked at: id, score, ...
UNRECORDED_IDS = """
local cap = tonumber(ARGV[1])
local head, members = {}, {}
for _, set in ipairs(KEYS) do
  local chunk = redis.call("ZRANGE", set, 0, cap - 1, "WITHSCORES")
  local beyond, oldest = redis.call("ZCARD", set) - cap, ""
  if beyond > 0 then oldest = redis.call("ZRANGE", set, cap, cap, "WITHSCORES")[2] else beyond = 0 end
  head[#head + 1] = #chunk / 2
  head[#head + 1] = beyond
  head[#head + 1] = oldest
  for _, value in ipairs(chunk) do members[#members + 1] = value end
end
for _, value in ipairs(members) do head[#head + 1] = value end
return head
"""

#: Second half: how many of those members are not recorded for their current run, and
#: the score of the oldest such, per set. KEYS: per member its hash. ARGV: recorded field,
#: number of completed members, then per member its score. Returns {n completed, oldest
#: completed, n failed, oldest failed} ("" when none).
UNRECORDED_COUNT = """
local field, n_completed = ARGV[1], tonumber(ARGV[2])
local found = {0, "", 0, ""}
for i, key in ipairs(KEYS) do
  local score = ARGV[i + 2]
  local mark = redis.call("HGET", key, field)
  if not (mark and string.sub(mark, 1, #score + 1) == score .. ":") then
    local at = i <= n_completed and 1 or 3
    found[at] = found[at] + 1
    if found[at + 1] == "" then found[at + 1] = score end
  end
end
return found
"""
