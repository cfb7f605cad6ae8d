"""``bullworker start --processes N``: run N worker processes and keep them running.

Python runs about one core's worth of jobs per process, so a runner uses more
cores with more processes. The supervisor starts N children (each a plain
``bullworker start``), restarts a child that dies, forwards SIGTERM/SIGINT to
all of them and waits for their graceful shutdown; a second signal kills them
at once. The recorder needs no coordination here: its leader lock already
makes exactly one of all runners record each queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

from bullworker.core.tasks import within

log = logging.getLogger("bullworker.supervisor")

#: A child that dies sooner than this after its start is restarted with backoff.
FAST_EXIT = 5.0


class Supervisor:
    """Keeps ``processes`` copies of a command running until told to stop."""

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        grace: float,
        metrics_port: int | None = None,
    ) -> None:
        self.command = list(command)
        #: Worker process ``slot`` serves metrics on ``metrics_port + slot``.
        self.metrics_port = metrics_port
        self.processes = processes
        self.grace = grace
        self.children: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self._stopping = asyncio.Event()
        self._killed = False

    async def _spawn(self, slot: int) -> asyncio.subprocess.Process:
        env = {**os.environ, "BULLWORKER_PROCESS_SLOT": str(slot)}
        if self.metrics_port is not None:
            env["BULLWORKER_METRICS_PORT"] = str(self.metrics_port + slot)
        # A session of its own: Ctrl-C in a terminal (or a signal to the whole group)
        # then reaches the supervisor alone, which forwards it once; a child that got
        # it twice would take the second for "stop at once" and skip its grace period.
        proc = await asyncio.create_subprocess_exec(*self.command, env=env, start_new_session=True)
        log.info("started worker process %d (pid %d)", slot, proc.pid)
        return proc

    async def _keep(self, slot: int) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            proc = await self._spawn(slot)
            self.children[slot] = proc
            started = time.monotonic()
            code = await proc.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - started
            backoff = backoff * 2 if lived < FAST_EXIT else 0.5
            delay = min(backoff, 30.0) if lived < FAST_EXIT else 0.0
            log.error(
                "worker process %d (pid %d) exited with %s; restarting%s",
                slot, proc.pid, code, f" in {delay:.1f} s" if delay else "",
            )  # fmt: skip
            self.restarts += 1
            with contextlib.suppress(TimeoutError):
                await within(self._stopping.wait(), delay or 0.001)

    def _signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            log.warning("second %s: killing worker processes", name)
            self._killed = True
            for proc in self.children.values():
                if proc.returncode is None:
                    proc.kill()
            return
        log.info("%s received: stopping %d worker processes", name, len(self.children))
        self._stopping.set()
        for proc in self.children.values():
            if proc.returncode is None:
                proc.send_signal(signum)

    async def run(self) -> int:
        """Run until a signal; return the exit status for the supervisor."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._signal, signum)
        keepers = [asyncio.create_task(self._keep(slot)) for slot in range(self.processes)]
        await self._stopping.wait()
        await asyncio.gather(*keepers, return_exceptions=True)
        deadline = self.grace + 10.0  # children bound their own shutdown by the grace
        waits = [asyncio.create_task(p.wait()) for p in self.children.values()]
        _, pending = await asyncio.wait(waits, timeout=deadline) if waits else (set(), set())
        if pending:
            log.error("worker processes did not stop within %.0f s; killing them", deadline)
            for proc in self.children.values():
                if proc.returncode is None:
                    proc.kill()
            await asyncio.gather(*pending, return_exceptions=True)
        return 130 if self._killed else 0


def child_command(app_spec: str | None, args: Sequence[str]) -> list[str]:
    """The command line of one worker process."""
    command = [sys.executable, "-m", "bullworker", "start", *args]
    if app_spec:
        command += ["--app", app_spec]
    return command
