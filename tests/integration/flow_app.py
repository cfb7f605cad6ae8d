"""Jobs of the flow tests (tests/integration/test_flows.py), on their own registry.

The parent ``BuildReport`` runs on ``BULL_QUEUE`` ("flows" in the tests), its
Python children on "images"; Node's jobs of a flow run on "node-images" and
"node-reports", which no Python runner consumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from bullworker import (
    AppConfig,
    BaseJob,
    JobContext,
    JobParent,
    JobRegistry,
    create_app,
    worker_job,
)

reg = JobRegistry()

#: What each BuildReport run read of its children (cleared by the tests).
SEEN: list[dict[str, Any]] = []
#: The parent each ResizeImage run saw.
PARENTS: list[JobParent | None] = []


class ResizeIn(TypedDict):
    path: str


@dataclass
class Resized:
    path: str
    width: int


@worker_job(registry=reg)
class ResizeImage(BaseJob[ResizeIn, Resized]):
    QUEUE_NAME = "images"

    async def handle(self, data: ResizeIn, job: JobContext) -> Resized:
        PARENTS.append(job.parent)
        return Resized(path=data["path"], width=10 * len(data["path"]))


@worker_job(registry=reg)
class BrokenImage(BaseJob[ResizeIn, None]):
    """Always fails, once (no retries)."""

    QUEUE_NAME = "images"

    async def handle(self, data: ResizeIn) -> None:
        raise ValueError(f"cannot read {data['path']}")


class ReportIn(TypedDict):
    day: str


@worker_job(registry=reg)
class BuildReport(BaseJob[ReportIn, dict[str, Any]]):
    """Reads its children's results every way there is and returns what it read."""

    async def handle(self, data: ReportIn, job: JobContext) -> dict[str, Any]:
        raw = await job.children_values()
        typed = await job.children_values(ResizeImage)
        thumbnails = await job.children_values("thumbnail")
        failures = await job.children_failures()
        SEEN.append(
            {"id": job.id, "raw": raw, "typed": typed, "thumbnails": thumbnails,
             "failures": failures}
        )  # fmt: skip
        assert all(isinstance(value, Resized) for value in typed.values())
        return {
            "day": data["day"],
            "widths": {child: value.width for child, value in typed.items()},
            "thumbnails": thumbnails,
            "children": sorted(raw),
            "failures": failures,
        }


@worker_job(registry=reg)
class SyncReport(BaseJob[ReportIn, dict[str, Any]]):
    """A sync parent: the ``*_sync`` twins, from its thread."""

    def handle(self, data: ReportIn, job: JobContext) -> dict[str, Any]:
        typed = job.children_values_sync(ResizeImage)
        return {
            "raw": job.children_values_sync(),
            "widths": {child: value.width for child, value in typed.items()},
            "failures": job.children_failures_sync(),
        }


app = create_app(config=AppConfig(), enable_worker=True, registry=reg)
