"""The fault suite's table: one row per scenario, written as docs/reliability.md.

Each test fills a :class:`Scenario` as it goes (the ``scenario`` fixture of
conftest.py); the result is set from the test's outcome, so a failing test
still leaves its row, marked fail, with the figures it had reached.
"""

from __future__ import annotations

import platform
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata

_PORT = re.compile(r"127\.0\.0\.1:\d{4,5}\b")

#: Sections of the table, in this order.
GROUPS = [
    "Shutdown",
    "Processes",
    "Redis outage",
    "Sentinel",
    "PostgreSQL outage",
    "Runner killed",
    "Bad input",
    "Security",
]


@dataclass
class Scenario:
    """What one scenario tried and what survived."""

    group: str
    title: str
    injected: str = ""
    sent: int | None = None
    completed: int | None = None
    recorded: int | None = None
    dup_executed: int | None = None
    dup_rows: int | None = None
    recovery: str = "-"
    result: str = "fail"
    explanation: str = ""
    settings: dict[str, object] = field(default_factory=dict)
    slow: bool = False
    seconds: float = 0.0
    test: str = ""

    def figures(self, **values: object) -> None:
        """Set several columns at once (``sent=..., completed=...``)."""
        for name, value in values.items():
            if not hasattr(self, name):
                raise AttributeError(name)
            setattr(self, name, value)


#: What the suite found, the fixes in the library, and the limits that remain.
FINDINGS = """\
## What the suite found, and the fixes

- **Slow recovery after a Redis restart.** bullmq builds every client with
  `Retry(ExponentialBackoff(cap=20, base=1), 20)`: a runner took 6.8 s after an 8 s outage
  and 19.8 s after a 31 s one to run a job again (up to 20 s between tries). Passing `retry=` ourselves collides with bullmq's own argument, so
  `bullworker.connection.use_retry_policy()` sets bullworker's policy on the pool of each client
  bullmq built (`connection_kwargs["retry"]`, read by redis-py when it opens a connection):
  tries 0.2, 0.4, 0.8 s and then every second, for about 28 s; after that the Worker's fetch
  loop tries again every second (`runRetryDelay`, bullmq: 15 s). The runner now resumes within about a second of Redis coming back.
- **Sentinel did not survive a failover.** bullmq clients hold one connection for life, and
  redis-py 8 reconnects it to the address it had (not through the sentinels): after the
  primary was killed the runner never resumed, and after `SENTINEL FAILOVER` producers, workers
  and the recorder went on writing to the demoted primary for about 10 s, until the sentinel
  reconfigured it and it dropped those writes (39 rows for 140 jobs). Sentinel connections now
  ask the sentinels for the master on every (re)connect, check it at most every second
  (before every command for producers) and reconnect when it moved; no master is named while
  a failover is in progress, so writes wait for the new one; an idle worker wakes every second
  instead of every 5 s; the pools bullmq never closed are closed.
- **Producer errors.** A Redis `ConnectionError` (refused credentials, no Sentinel master)
  escaped `queue_job` as a raw redis-py error; it is now `QueueUnavailable`. Refused
  credentials and untrusted certificates fail at once instead of being retried until
  `REDIS_TIMEOUT` with a misleading "did not answer".
- **Configuration.** `DATABASE_SCHEMA` with quotes or semicolons and a `DATABASE_URL` that is
  neither PostgreSQL nor SQLite were accepted and surfaced only when the first job finished,
  as recorder errors repeated with backoff; both now stop the app at start in one line.
- **A blocked event loop** (an `async` handler calling blocking code) delays every other job and,
  longer than `WORKER_LOCK_DURATION`, makes jobs run twice. A new watchdog
  (`bullworker/watchdog.py`, `LOOP_BLOCK_WARNING`, default 5 s) logs from a thread which job
  blocks the loop and where.

Limits that remain: Redis's durability is the system's (use AOF; with `appendfsync everysec`
a crash can lose the last second of acknowledged writes). A job runs again when its runner
dies, is force-closed, stalls longer than its lock, or finishes on a primary being failed over
(workers check the master at most every second); make handlers idempotent. BullMQ job ids come
from a counter in Redis that can go back (a flush, a failover); `_jobs` keys rows by id,
`createdAt` and attempt, so such jobs keep their own rows.
"""


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _versions() -> str:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    try:
        redis_server = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.split()[2]
    except (OSError, IndexError):
        redis_server = "?"
    return (
        f"Python {platform.python_version()}, bullmq {version('bullmq')}, "
        f"redis-py {version('redis')}, psycopg {version('psycopg')}, "
        f"redis-server {redis_server.removeprefix('v=')}, {platform.machine()}"
    )


def render(rows: list[Scenario], *, total_seconds: float, command: str) -> str:
    """The markdown of docs/reliability.md."""
    rows = sorted(rows, key=lambda r: GROUPS.index(r.group))  # stable: in the order run
    passed = sum(r.result == "pass" for r in rows)
    out = [
        "# Reliability: what the fault suite tried and what survived",
        "",
        "bullworker promises **at-least-once execution, exactly-once recording, nothing lost**.",
        "The fault suite (`tests/faults/`) injects each fault below against real servers it",
        "starts itself (redis-server on its own ports, a Sentinel set, a TLS server, a TCP",
        "proxy in front of PostgreSQL) and counts what survived. This file is written by",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {len(rows)} scenarios, "
        f"{passed} passed, {total_seconds:.0f} s. {_versions()}.",
        "`scripts/test` runs the quick scenarios; `--slow` adds the long ones (marked *slow*).",
        "",
        "Columns: *sent* jobs queued successfully; *completed* jobs that reached their final",
        "state in Redis; *recorded* rows in `_jobs`; *dup. executed* extra runs of a handler",
        "(at-least-once: expected only where a run was cut off); *dup. rows* rows beyond one per",
        "job (must be 0); *recovery* the time the system needed to come back after the fault.",
        "",
        "| scenario | injected | sent | completed | recorded | dup. executed | dup. rows "
        "| recovery | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        title = f"{row.group}: {row.title}" + (" *(slow)*" if row.slow else "")
        cells = [
            title, row.injected, row.sent, row.completed, row.recorded, row.dup_executed,
            row.dup_rows, row.recovery, f"**{row.result}**",
        ]  # fmt: skip
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    out += ["", FINDINGS, "## Scenarios", ""]
    for group in GROUPS:
        members = [r for r in rows if r.group == group]
        if not members:
            continue
        out += [f"### {group}", ""]
        for row in members:
            text = _PORT.sub("127.0.0.1:<port>", row.explanation)  # ports differ at each run
            out.append(f"**{row.title}** (`{row.test}`, {row.seconds:.1f} s). {text}")
            if row.settings:
                shown = ", ".join(f"`{k}={v}`" for k, v in row.settings.items())
                out.append(f"Settings: {shown}.")
            out.append("")
    return "\n".join(out).rstrip() + "\n"
