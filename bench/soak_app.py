"""The app of the soak run (``--app bench.soak_app:app``); config from the environment.

``SoakJob`` does nothing but append its job id to a file of its own process
(``runs-<pid>.log`` in ``SOAK_RUNS_DIR``), so that the soak can count jobs that
ran more than once, also in a process killed with SIGKILL: each line is one
``write`` on an ``O_APPEND`` descriptor, so nothing waits in a buffer that a
kill would lose.
"""

from __future__ import annotations

import os
import time
from typing import TypedDict

from bullworker import App, AppConfig, BaseJob, JobRegistry, create_app, current_job, worker_job

registry = JobRegistry()


class Item(TypedDict):
    p: str  # the producer: "py" or "node"
    i: int  # its sequence number, unique per producer


_runs: tuple[int, int] | None = None  # (pid, descriptor) of this process's run log


def _runs_fd() -> int | None:
    global _runs
    pid = os.getpid()
    if _runs is None or _runs[0] != pid:
        where = os.environ.get("SOAK_RUNS_DIR")
        if not where:
            return None
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        _runs = (pid, os.open(os.path.join(where, f"runs-{pid}.log"), flags, 0o644))
    return _runs[1]


@worker_job(registry=registry)
class SoakJob(BaseJob[Item, None]):
    async def handle(self, data: Item) -> None:
        fd = _runs_fd()
        if fd is not None:
            os.write(fd, f"{current_job().id} {time.time():.3f}\n".encode())


def make_app(config: AppConfig) -> App:
    return create_app(config=config, enable_worker=True, registry=registry)


app = make_app(AppConfig())
