"""Jobs from other producers whose retry options BullMQ cannot compute with fail at once."""

from __future__ import annotations

from typing import Any

from bullworker import BaseJob, JobRegistry, worker_job
from tests.helpers import bull_queue, wait_finished
from tests.integration.runner_support import make_app

checked = JobRegistry()


@worker_job(registry=checked)
class AlwaysFails(BaseJob[dict[str, Any], None]):
    async def handle(self, data: dict[str, Any]) -> None:
        raise RuntimeError("no")


async def test_a_bad_backoff_from_another_producer_fails_instead_of_vanishing(
    prefix: str,
) -> None:
    # queue_job refuses these options; a raw producer (or a Node one) can still send
    # them. Failing the run then made BullMQ's retry script raise half-way, and the job
    # dropped out of every list: never retried, never failed, never recorded.
    app = make_app(prefix, registry=checked)
    async with bull_queue("default", prefix) as queue:
        bad = await queue.add(
            "AlwaysFails", {}, {"attempts": 2, "backoff": {"type": "fixed", "delay": "x"}}
        )
        good = await queue.add(
            "AlwaysFails", {}, {"attempts": 2, "backoff": {"type": "fixed", "delay": 10}}
        )
        runner = app.create_runner()
        await runner.start()
        try:
            failed = await wait_finished(queue, bad.id)
            retried = await wait_finished(queue, good.id)
        finally:
            await runner.stop(grace=5)
            await app.stop()
        assert await failed.getState() == "failed"
        assert failed.failedReason == (
            f"MalformedJobError: job {bad.id} cannot be read "
            "(PayloadError: backoff.delay must be a non-negative integer, got 'x')"
        )
        assert (retried.attemptsMade, retried.failedReason) == (2, "RuntimeError: no")
