"""Queue a handful of shop jobs and print their ids.

Run it from the repository root, with a worker running (see app.py)::

    python -m examples.quickstart.produce
"""

from __future__ import annotations

import asyncio
from typing import Any

from bullworker import BaseJob, WorkerService

from .app import ChargeCard, ResizeImage, SendWelcomeEmail, app


async def main() -> None:
    # Any code of your service can get the producer from the app (or have it
    # injected into a job's constructor) and queue jobs with typed payloads.
    jobs = app.resolve(WorkerService)

    async def queue(job: type[BaseJob[Any, Any]], data: Any, **options: Any) -> None:
        job_id = await jobs.queue_job(job, data, **options)
        print(f"queued {job.__name__:<16} queue={jobs.queue_for(job):<7} id={job_id}", flush=True)

    try:
        for user_id in (1, 2, 3, 4):
            await queue(
                SendWelcomeEmail, {"user_id": user_id, "email": f"user{user_id}@example.com"}
            )
        for name in ("cat", "dog", "parrot"):
            await queue(ResizeImage, {"path": f"photos/{name}.jpg", "width": 320})
        for order, cents in (("A-1001", 1999), ("A-1002", 4500), ("A-1003", 250)):
            # delay (milliseconds): run it half a second from now
            await queue(ChargeCard, {"order_id": order, "cents": cents}, delay=500)
    finally:
        await app.stop()  # closes the producer's Redis connections


if __name__ == "__main__":
    asyncio.run(main())
