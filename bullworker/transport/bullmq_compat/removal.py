"""Removing a job that has not started, and only such a job (``bullworker jobs cancel``).

BullMQ's own ``removeJob`` script (``Queue.remove``, Node's ``job.remove()``)
removes a job from whatever state it is in, except a locked (running) one: a
job that finished in the meantime would be deleted before the recorder wrote
its row. This runs the same script, from the installed bullmq, behind a check
made in the same atomic call: the job must still be waiting, paused,
prioritized or delayed, and not locked. What BullMQ does on removal is done
the same way (its deduplication key, its parent's dependencies, the
``removed`` event), and the job's children are left alone.
"""

from __future__ import annotations

from typing import Any, Literal

from bullworker.core import keys
from bullworker.core.errors import BullmqIncompatible

_REMOVE_SCRIPT = "removeJob-2.lua"
#: The lists and sets of jobs that have not started.
_UNSTARTED = ("wait", "paused", "prioritized", "delayed")

#: Before BullMQ's ``removeJob``. KEYS: job hash, repeat (BullMQ's), then `_UNSTARTED`,
#: then the job's lock (declared for Redis Cluster; BullMQ's script reads KEYS[1-2] only).
#: ARGV: job id, "0" (children stay), the queue's key prefix (BullMQ's), then
#: ``check`` (only say whether it could be removed) or ``remove``.
#: Returns -100 when the job has started (or finished, or is gone), -8 when it is the
#: next run of a job scheduler (removing it would stop the schedule), 1 when it was
#: removed (``check``: could be).
_GUARD = """
local function listed(key, id)
  local ok, pos = pcall(redis.call, "LPOS", key, id)
  if ok then return pos ~= false and pos ~= nil end
  for _, item in ipairs(redis.call("LRANGE", key, 0, -1)) do  -- Redis before 6.0.6
    if item == id then return true end
  end
  return false
end
local guard_id = ARGV[1]
local unstarted = redis.call("ZSCORE", KEYS[5], guard_id) or redis.call("ZSCORE", KEYS[6], guard_id)
  or listed(KEYS[3], guard_id) or listed(KEYS[4], guard_id)
if not unstarted or redis.call("EXISTS", KEYS[7]) == 1 then return -100 end
local scheduled = redis.call("HGET", KEYS[1], "rjk")
if scheduled then
  local millis = redis.call("ZSCORE", KEYS[2], scheduled)
  if millis and guard_id == "repeat:" .. scheduled .. ":" .. millis then return -8 end
end
if ARGV[4] == "check" then return 1 end
"""

Removal = Literal["removed", "removable", "started", "scheduler"]
_OUTCOMES: dict[int, Removal] = {-100: "started", -8: "scheduler", 0: "started"}


def _script() -> str:
    from bullmq.redis_connection import loadScript

    try:
        return _GUARD + str(loadScript(_REMOVE_SCRIPT))
    except OSError as exc:
        raise BullmqIncompatible(
            f"the installed bullmq lacks its Lua script {_REMOVE_SCRIPT} ({type(exc).__name__})"
        ) from None


async def remove_unstarted(
    client: Any, prefix: str, queue: str, job_id: str, *, check: bool = False
) -> Removal:
    """Remove ``<queue>:<job_id>`` if it has not started: ``removed`` (``removable`` with
    ``check``, which removes nothing), ``started`` (running, finished or gone) or
    ``scheduler`` (the next run of a job scheduler)."""
    script = client.register_script(_script())
    job_keys = [
        keys.job_key(prefix, queue, job_id),
        keys.queue_key(prefix, queue, "repeat"),
        *(keys.queue_key(prefix, queue, name) for name in _UNSTARTED),
        keys.job_lock_key(prefix, queue, job_id),
    ]
    args = [job_id, "0", keys.queue_key(prefix, queue, ""), "check" if check else "remove"]
    result = int(await script(keys=job_keys, args=args))
    if result == 1:
        return "removable" if check else "removed"
    return _OUTCOMES.get(result, "started")
