"""Dramatiq (threads, Redis broker): a peer of the throughput benchmark.

    python bench/peers/dramatiq_worker.py fill WORKLOAD N       # queue N jobs, then exit
    python bench/peers/dramatiq_worker.py work WORKLOAD CONCURRENCY   # run until SIGTERM

Run by the Python of ``.venv/peers`` (bench/requirements-peers.txt), never the project's.
Redis and the key prefix come from ``REDIS_URL`` and ``BULL_PREFIX``; the broker's
namespace is ``<prefix>:dramatiq``, so the queue is the list ``<prefix>:dramatiq:default``
and its messages the hash ``...:default.msgs`` (a message leaves the hash when acked).
The worker is ``dramatiq.Worker`` with CONCURRENCY threads and the default middleware,
what ``dramatiq --processes 1 --threads CONCURRENCY`` runs, in this one process.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(
    url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    namespace=f"{os.environ['BULL_PREFIX']}:dramatiq",
)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop")
def noop(i: int) -> None:
    return None


@dramatiq.actor(actor_name="sleep")
def sleep_1ms(i: int) -> None:
    time.sleep(0.001)


ACTORS = {"noop": noop, "sleep": sleep_1ms}


def fill(workload: str, n: int) -> None:
    """Queue ``n`` jobs with Dramatiq's own ``send`` (one script call each)."""
    actor = ACTORS[workload]
    for i in range(n):
        actor.send(i)
    broker.close()


def work(concurrency: int) -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker = dramatiq.Worker(broker, worker_threads=concurrency)
    worker.start()
    stop.wait()
    worker.stop()
    broker.close()


def main(argv: list[str]) -> None:
    action, workload, number = argv[0], argv[1], int(argv[2])
    if action == "fill":
        fill(workload, number)
    else:
        work(number)


if __name__ == "__main__":
    main(sys.argv[1:])
