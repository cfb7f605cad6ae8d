"""A watchdog that notices when the event loop is blocked, and names the job.

An ``async def handle`` that calls blocking code (``time.sleep``, a sync HTTP
client, a long computation) stops everything else of the runner: other jobs,
lock renewals, the stalled-job check, the recorder. Blocked longer than
``WORKER_LOCK_DURATION``, its jobs' locks expire and another runner takes them
over while they still run here. A task on the loop updates a heartbeat; a
thread checks it and, when the loop has been blocked for more than
``LOOP_BLOCK_WARNING`` seconds, logs (from the thread, since the loop cannot)
which job's task is running and where it is stuck.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from types import FrameType

from bullworker.core.tasks import cancel_and_wait

log = logging.getLogger("bullworker.watchdog")

#: Name prefix the runner gives the task of a running job (see ``job_task_name``).
TASK_PREFIX = "bullworker-job "


def job_task_name(name: str, job_id: object, queue: str) -> str:
    """The task name under which a job runs, as the watchdog reports it."""
    return f"{TASK_PREFIX}{name} id={job_id} queue={queue}"


class LoopWatchdog:
    """Warns when the running loop makes no progress for ``threshold`` seconds."""

    def __init__(self, threshold: float, *, interval: float | None = None) -> None:
        self.threshold = threshold
        self.interval = interval if interval is not None else min(0.5, threshold / 4)
        #: Blocked episodes seen since start (for tests and metrics).
        self.episodes = 0
        self._beat = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._stopping.clear()
        self._task = asyncio.create_task(self._heartbeat(), name="bullworker-watchdog")
        self._thread = threading.Thread(target=self._watch, name="bullworker-watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self.interval)

    def _watch(self) -> None:
        warned: float | None = None  # heartbeat value of the episode already reported
        while not self._stopping.wait(self.interval):
            beat = self._beat
            if warned is not None and beat != warned:
                log.warning("event loop ran again after %.1f s blocked", beat - warned)
                warned = None
            blocked = time.monotonic() - beat
            if blocked > self.threshold and warned is None:
                warned = beat
                self.episodes += 1
                culprit, where = self._culprit()
                log.warning(
                    "event loop blocked for %.1f s by %s at %s: nothing else runs meanwhile "
                    "(other jobs, lock renewals, recording); an async handle() must not call "
                    "blocking code: make handle() a plain def (it then runs in a thread) or use "
                    "await asyncio.to_thread(...)",
                    blocked, culprit, where,
                )  # fmt: skip

    def _culprit(self) -> tuple[str, str]:
        """The running task (a job's, named by the runner) and the innermost code location."""
        task = asyncio.current_task(self._loop) if self._loop is not None else None
        if task is None:
            culprit = "code outside any task"
        elif task.get_name().startswith(TASK_PREFIX):
            culprit = "job " + task.get_name()[len(TASK_PREFIX) :]
        else:
            culprit = f"task {task.get_name()!r}"
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return culprit, "(unknown)"
        where = _location(frame)
        caller: FrameType | None = frame
        depth = 0
        while caller is not None and depth < 100 and caller.f_code.co_name != "handle":
            caller, depth = caller.f_back, depth + 1
        if caller is not None and caller is not frame and caller.f_code.co_name == "handle":
            where += f" (called from {_location(caller)})"
        return culprit, where


def _location(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
