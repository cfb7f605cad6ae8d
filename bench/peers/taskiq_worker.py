"""taskiq with its Redis stream broker: a peer of the throughput benchmark.

    python bench/peers/taskiq_worker.py fill WORKLOAD N       # queue N jobs, then exit
    python bench/peers/taskiq_worker.py work WORKLOAD CONCURRENCY   # run until SIGTERM

Run by the Python of ``.venv/peers`` (bench/requirements-peers.txt), never the project's.
Redis and the key prefix come from ``REDIS_URL`` and ``BULL_PREFIX``; the stream is
``<prefix>:taskiq`` with the consumer group ``bench``. The worker is what ``taskiq worker
--workers 1 --max-async-tasks CONCURRENCY`` runs (its receiver, on uvloop when installed,
with the CLI's defaults otherwise), in this one process, so its CPU is one process's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

STREAM = f"{os.environ['BULL_PREFIX']}:taskiq"
GROUP = "bench"
# Consumer id "0": the group reads the stream from its start, so jobs queued before
# the group existed are not skipped (taskiq's default "$" would skip them).
broker = RedisStreamBroker(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    queue_name=STREAM,
    consumer_group_name=GROUP,
    consumer_id="0",
)


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    return None


@broker.task(task_name="sleep")
async def sleep_1ms(i: int) -> None:
    await asyncio.sleep(0.001)


TASKS = {"noop": noop, "sleep": sleep_1ms}


async def fill(workload: str, n: int) -> None:
    """Queue ``n`` jobs with taskiq's own ``kiq``, 100 in flight at a time."""
    task = TASKS[workload]
    await broker.startup()  # creates the stream and the consumer group
    try:
        for first in range(0, n, 100):
            await asyncio.gather(*(task.kiq(i) for i in range(first, min(first + 100, n))))
    finally:
        await broker.shutdown()


async def work(concurrency: int) -> None:
    finish = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finish.set)
    broker.is_worker_process = True
    with ThreadPoolExecutor(max_workers=10) as pool:
        receiver = Receiver(broker, executor=pool, max_async_tasks=concurrency)
        try:
            await receiver.listen(finish)
        finally:
            await broker.shutdown()


def main(argv: list[str]) -> None:
    action, workload, number = argv[0], argv[1], int(argv[2])
    if action == "fill":
        asyncio.run(fill(workload, number))
        return
    try:
        import uvloop
    except ImportError:  # as the taskiq CLI: uvloop when it is there
        asyncio.run(work(number))
    else:
        uvloop.run(work(number))


if __name__ == "__main__":
    main(sys.argv[1:])
