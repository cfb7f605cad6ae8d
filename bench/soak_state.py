"""What the soak reads while and after it runs: jobs run so far, the leader, ``_jobs``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bullworker.core import keys

ROWS_SQL = """
SELECT "queueId", "data"->>'p', ("data"->>'i')::int, "status" FROM "_jobs" WHERE "queue" = %s
"""

LAG_SQL = """
SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lag), max(lag)
FROM (SELECT extract(epoch FROM ("recordedAt" - "completedAt"))::float8 AS lag FROM "_jobs") AS l
"""


class Progress:
    """Jobs run so far: the lines of the workers' run logs, read as they grow."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self.count = 0
        self._read: dict[Path, int] = {}

    def update(self) -> int:
        for path in self.runs_dir.glob("runs-*.log"):
            done = self._read.get(path, 0)
            try:
                with path.open("rb") as file:
                    file.seek(done)
                    chunk = file.read()
            except OSError:
                continue
            whole = chunk.rfind(b"\n") + 1  # a line being written counts once it is complete
            self.count += chunk.count(b"\n", 0, whole)
            self._read[path] = done + whole
        return self.count


async def leader_pid(client: aioredis.Redis, prefix: str, queue: str) -> int | None:
    """The pid of the process holding the queue's recorder lease (None: nobody, or Redis down).

    The lease key holds a token; the process that won it writes its pid to the leader-info
    hash right after (``bullworker/history/recording.py``), so both must be there.
    """
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.exists(keys.leader_key(prefix, queue))
            pipe.hget(keys.leader_info_key(prefix, queue), "pid")
            held, pid = await pipe.execute()
    except Exception:
        return None
    return int(pid) if held and pid else None


def read_rows(dsn: str, queue: str) -> list[tuple[str, str, int, str]]:
    """(job id, producer, sequence number, status) of every row of ``queue`` in ``_jobs``."""
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor(name="soak_rows") as cur:
        cur.itersize = 50_000
        cur.execute(ROWS_SQL, (queue,))
        return [(str(a), str(b), int(c), str(d)) for a, b, c, d in cur]


def recording_lag(dsn: str) -> dict[str, Any]:
    """``recordedAt - completedAt`` over all rows: p50, p99 and max, in seconds."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(LAG_SQL).fetchone()
    assert row is not None
    (p50, p99), worst = row[0] or (0.0, 0.0), row[1] or 0.0
    return {"p50_s": round(p50, 3), "p99_s": round(p99, 3), "max_s": round(worst, 3)}
