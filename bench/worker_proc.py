"""One worker process of the throughput benchmark, run until SIGTERM.

    python -m bench.worker_proc raw|bullworker WORKLOAD QUEUE CONCURRENCY

WORKLOAD is noop, sleep or (raw only: the pickup benchmark's) stamp.

``raw`` is a plain ``bullmq.Worker`` with the given concurrency and a processor
that does the workload; ``bullworker`` is the bullworker Runner of ``bench.app``
(bullmq's Worker subclassed, plus dispatch, validation, DI, hooks and, unless
``RECORD_JOBS=false``, the recorder). Redis, prefix and recording come
from the environment (``REDIS_URL``, ``BULL_PREFIX``, ``RECORD_JOBS``...).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any


async def noop(job: Any, token: str) -> None:
    return None


async def sleep_1ms(job: Any, token: str) -> None:
    await asyncio.sleep(0.001)


async def stamp(job: Any, token: str) -> float:
    """The pickup benchmark's job: the wall clock when the processor started."""
    return time.time()


PROCESSORS = {"noop": noop, "sleep": sleep_1ms, "stamp": stamp}


async def until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def run_raw(workload: str, queue: str, concurrency: int) -> None:
    from bullmq import Worker

    from bench.common import bull_connection

    opts = {
        "prefix": os.environ["BULL_PREFIX"],
        "connection": bull_connection(),
        "concurrency": concurrency,
        "autorun": False,
    }
    worker = Worker(queue, PROCESSORS[workload], opts)
    task = asyncio.create_task(worker.run())
    if workload == "stamp":  # the pickup benchmark waits for this line
        print("ready", flush=True)
    await until_signal()
    await worker.close()
    await task


async def run_bullworker(queue: str, concurrency: int) -> None:
    os.environ["BULL_QUEUE"] = queue  # before the app reads its config
    from bench import app as bench_app

    runner = bench_app.app.create_runner(queues=[queue], concurrency=concurrency)
    await runner.start()
    bench_app.app.runner = runner
    await until_signal()
    await bench_app.app.stop()


def main(argv: list[str]) -> None:
    kind, workload, queue, concurrency = argv[0], argv[1], argv[2], int(argv[3])
    if kind == "raw":
        asyncio.run(run_raw(workload, queue, concurrency))
    else:  # on the loop `bullworker start` would use (EVENT_LOOP)
        from bullworker.runtime.loop import run

        run(run_bullworker(queue, concurrency), os.environ.get("EVENT_LOOP", "auto"))


if __name__ == "__main__":
    main(sys.argv[1:])
