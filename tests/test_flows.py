"""Flows without Redis: FlowJob's checks, a flow kept in test mode, a parent run inline.

The flows on real Redis, PostgreSQL, SQLite and Node BullMQ 6.7 are in
tests/integration/test_flows.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from bullworker import (
    FlowHandle,
    FlowJob,
    PayloadError,
    ResultError,
    ResultUnavailable,
    UnknownJobError,
    create_app,
)
from bullworker.core import keys
from bullworker.testing import queued, run_job
from tests.helpers import app_config
from tests.integration.flow_app import (
    SEEN,
    BuildReport,
    Resized,
    ResizeImage,
    SyncReport,
    reg,
)

#: Nothing listens there: a flow that reached for Redis would fail.
CLOSED_REDIS = "redis://127.0.0.1:1/0"


def kept_app() -> Any:
    return create_app(
        config=app_config(app_env="test", bull_queue="flows", redis_url=CLOSED_REDIS),
        registry=reg,
    )


def test_a_child_takes_at_most_one_failure_option() -> None:
    with pytest.raises(PayloadError) as caught:
        FlowJob(ResizeImage, {"path": "a"}, fail_parent_on_failure=True,
                ignore_dependency_on_failure=True)  # fmt: skip
    assert str(caught.value) == (
        "ResizeImage: fail_parent_on_failure and ignore_dependency_on_failure cannot be used "
        "together: a child's failure fails its parent, lets it continue, is ignored or is "
        "removed; choose one"
    )
    with pytest.raises(PayloadError, match="remove_dependency_on_failure=True"):
        FlowJob.named("thumbnail", {}, removeDependencyOnFailure=True)
    with pytest.raises(PayloadError, match="takes a job class"):
        FlowJob("ResizeImage")  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="without ':'"):
        FlowJob.named("thumbnail", {}, queue="a:b")
    with pytest.raises(PayloadError, match="children must be a list of FlowJob"):
        FlowJob(BuildReport, {"day": "x"}, children=[{"name": "x"}])  # type: ignore[list-item]
    child = FlowJob(ResizeImage, {"path": "a"}, continue_parent_on_failure=True, attempts=2)
    assert (child.failure, child.opts, child.queue) == (
        "continueParentOnFailure",
        {"attempts": 2},
        None,
    )


async def test_a_flow_is_checked_like_queue_job() -> None:
    app = kept_app()
    service = app.worker_service
    with pytest.raises(PayloadError, match="ResizeImage: invalid payload: path"):
        await service.queue_flow(FlowJob(BuildReport, {"day": "x"}, children=[
            FlowJob(ResizeImage, {"width": 3})]))  # fmt: skip
    with pytest.raises(PayloadError, match="unknown job option"):
        await service.queue_flow(FlowJob(BuildReport, {"day": "x"}, lifetime=3))
    with pytest.raises(PayloadError, match="beyond 2\\^53"):
        await service.queue_flow(FlowJob.named("thumbnail", {"n": 2**60}, queue="node-images"))
    with pytest.raises(PayloadError, match="the root of a flow has no parent"):
        await service.queue_flow(FlowJob(BuildReport, {"day": "x"}, fail_parent_on_failure=True))
    with pytest.raises(PayloadError, match="queue_flow takes a FlowJob"):
        await service.queue_flow({"name": "BuildReport"})  # type: ignore[arg-type]
    assert service.queued == []


async def test_in_test_mode_the_flow_is_kept_parent_first() -> None:
    app = kept_app()
    flow = FlowJob(BuildReport, {"day": "2026-12-05"}, priority=3, children=[
        FlowJob(ResizeImage, {"path": "a.png"}, fail_parent_on_failure=True),
        FlowJob.named("thumbnail", {"path": "b.png"}, queue="node-images",
                      ignore_dependency_on_failure=True),
    ])  # fmt: skip
    handle = await app.worker_service.queue_flow(flow)
    assert isinstance(handle, FlowHandle) and handle == "test-1"
    assert (handle.name, handle.queue) == ("BuildReport", "flows")
    assert [(c.id, c.name, c.queue) for c in handle.children] == [
        ("test-2", "ResizeImage", "images"), ("test-3", "thumbnail", "node-images")]  # fmt: skip
    parent, resize, thumbnail = queued(app)
    assert (parent.name, parent.queue, parent.data) == (
        "BuildReport",
        "flows",
        {"day": "2026-12-05"},
    )
    assert parent.opts["priority"] == 3 and "parent" not in parent.opts
    link = {"id": "test-1", "queue": keys.qualified_name(app.config.bull_prefix, "flows")}
    assert resize.opts == {"failParentOnFailure": True, "parent": link}
    assert thumbnail.opts == {"ignoreDependencyOnFailure": True, "parent": link}
    assert queued(app, "thumbnail") == [thumbnail]
    with pytest.raises(ResultUnavailable, match="APP_ENV=test"):
        await handle.result(timeout=1)


async def test_an_unregistered_class_is_refused() -> None:
    app = create_app(config=app_config(app_env="test", redis_url=CLOSED_REDIS))
    with pytest.raises(UnknownJobError):
        await app.worker_service.queue_flow(FlowJob(BuildReport, {"day": "x"}))


async def test_a_parent_reads_its_children_inline() -> None:
    app = kept_app()
    result = await run_job(
        app,
        BuildReport,
        {"day": "d"},
        children_values={
            (ResizeImage, "images:1"): {"path": "a.png", "width": 50},
            ("thumbnail", "node-images:7"): {"by": "node"},
            "other:2": [1, 2],
        },
        children_failures={"images:3": "ValueError: cannot read c.png"},
    )
    assert result == {
        "day": "d",
        "widths": {"images:1": 50},
        "thumbnails": {"node-images:7": {"by": "node"}},
        "children": ["images:1", "node-images:7", "other:2"],
        "failures": {"images:3": "ValueError: cannot read c.png"},
    }
    assert SEEN[-1]["typed"] == {"images:1": Resized(path="a.png", width=50)}
    SEEN.clear()


async def test_a_child_result_that_is_not_out_raises() -> None:
    app = kept_app()
    with pytest.raises(Exception) as caught:
        await run_job(app, BuildReport, {"day": "d"},
                      children_values={(ResizeImage, "images:1"): {"path": "a.png"}})  # fmt: skip
    assert isinstance(caught.value.__cause__, ResultError)
    assert "ResizeImage: its result does not read back as Resized: width" in str(caught.value)
    with pytest.raises(ValueError, match="a child is <queue>:<jobId>"):
        await run_job(app, BuildReport, {"day": "d"}, children_values={"nocolon": 1})


async def test_a_sync_parent_reads_its_children_from_its_thread() -> None:
    result = await run_job(
        kept_app(),
        SyncReport,
        {"day": "d"},
        children_values={(ResizeImage, "images:1"): {"path": "a", "width": 10}, "x:2": None},
        children_failures={"images:3": "ValueError: no"},
    )
    assert result == {
        "raw": {"images:1": {"path": "a", "width": 10}, "x:2": None},
        "widths": {"images:1": 10},
        "failures": {"images:3": "ValueError: no"},
    }


def test_job_refs_strip_the_prefix_even_with_colons() -> None:
    assert keys.job_ref("bull", "bull:images:1") == "images:1"
    assert keys.job_ref("my:app", "my:app:images:1") == "images:1"
    assert keys.job_ref("bull", "other:pre:images:1") == "images:1"
    assert keys.parent_ref("a:b", {"id": "9", "queueKey": "a:b:flows"}, None) == "flows:9"
    assert keys.parent_ref("a:b", None, "a:b:flows:9") == "flows:9"
    assert keys.parent_ref("a:b", None, None) is None
