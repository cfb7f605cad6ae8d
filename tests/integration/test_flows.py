"""Flows on real Redis, with Node BullMQ 6.7 on either side (tests/node/flow.mjs).

A Python flow run by a bullworker runner; a Node FlowProducer's parent run by
a Node worker over Python children; a bullworker flow whose children Node
runs; what BullMQ does with a child's failure under each failure option; and,
recording on, the ``parent`` of the children's ``_jobs`` rows and the family
``bullworker jobs show`` prints, on PostgreSQL and SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bullworker import App, FlowJob, JobParent, Runner, create_app
from bullworker.history.store import JobStore, open_store
from tests import helpers
from tests.integration import flow_app
from tests.integration.flow_app import BrokenImage, BuildReport, Resized, ResizeImage, reg
from tests.integration.test_node_interop import NodeScripts

pytestmark = [pytest.mark.node, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = "tests.integration.flow_app:app"


def width(path: str) -> int:
    return 10 * len(path)


def make_app(prefix: str, redis_url: str, **settings: Any) -> App:
    settings.setdefault("record_jobs", False)  # finished jobs stay in Redis to be read
    config = helpers.app_config(
        bull_prefix=prefix, bull_queue="flows", redis_url=redis_url, app_env="production",
        **settings,
    )  # fmt: skip
    return create_app(config=config, enable_worker=True, registry=reg)


@contextlib.asynccontextmanager
async def runner(app: App, queues: list[str] | None = None) -> AsyncIterator[Runner]:
    running = app.create_runner(queues=queues)
    await running.start()
    try:
        yield running
    finally:
        await running.stop(grace=5)


@pytest.fixture(autouse=True)
def _clear() -> None:
    flow_app.SEEN.clear()
    flow_app.PARENTS.clear()


async def test_a_python_flow_parent_reads_its_childrens_results(
    prefix: str, redis_url: str
) -> None:
    bull_prefix = f"{prefix}:with:colons"  # the prefix may hold ':'
    app = make_app(bull_prefix, redis_url)
    flow = FlowJob(BuildReport, {"day": "2026-12-05"}, children=[
        FlowJob(ResizeImage, {"path": "a.png"}, fail_parent_on_failure=True),
        FlowJob(ResizeImage, {"path": "bb.png"}, attempts=2),
    ])  # fmt: skip
    try:
        async with runner(app):
            handle = await app.worker_service.queue_flow(flow)
            result = await handle.result(timeout=15)
            children = [await child.result(timeout=5) for child in handle.children]
    finally:
        await app.stop()
    a, b = (f"images:{child.id}" for child in handle.children)
    assert (handle.queue, handle.name, [c.queue for c in handle.children]) == (
        "flows", "BuildReport", ["images", "images"])  # fmt: skip
    assert children == [Resized("a.png", width("a.png")), Resized("bb.png", width("bb.png"))]
    assert result == {
        "day": "2026-12-05",
        "widths": {a: width("a.png"), b: width("bb.png")},
        "thumbnails": {},
        "children": sorted([a, b]),
        "failures": {},
    }
    [seen] = flow_app.SEEN
    assert seen["raw"] == {
        a: {"path": "a.png", "width": width("a.png")},
        b: {"path": "bb.png", "width": width("bb.png")},
    }
    assert seen["typed"] == {a: children[0], b: children[1]}
    assert [JobParent("flows", handle.id)] * 2 == flow_app.PARENTS


async def test_a_node_parent_reads_python_childrens_results(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    app = make_app(prefix, redis_url)
    spec = {
        "flow": {
            "name": "report", "queueName": "node-reports", "data": {"day": "d"},
            "children": [
                {"name": "ResizeImage", "queueName": "images", "data": {"path": "n.png"}},
                {"name": "ResizeImage", "queueName": "images", "data": {"path": "nn.png"}},
            ],
        },
        "workers": [{"queue": "node-reports"}],
        "count": 1,
    }  # fmt: skip
    try:
        async with runner(app):
            out = await node.run("flow.mjs", spec, timeout=25)
    finally:
        await app.stop()
    tree = out["tree"]
    first, second = (child["id"] for child in tree["children"])
    [parent] = out["jobs"]
    assert (parent["id"], parent["name"]) == (tree["id"], "report")
    assert parent["childrenValues"] == {
        f"{prefix}:images:{first}": {"path": "n.png", "width": width("n.png")},
        f"{prefix}:images:{second}": {"path": "nn.png", "width": width("nn.png")},
    }
    assert [JobParent("node-reports", tree["id"])] * 2 == flow_app.PARENTS


async def test_a_python_parent_reads_node_childrens_results(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    app = make_app(prefix, redis_url)
    flow = FlowJob(BuildReport, {"day": "d"}, children=[
        FlowJob.named("thumbnail", {"path": "t1.png"}, queue="node-images"),
        FlowJob.named("thumbnail", {"path": "t2.png"}, queue="node-images",
                      ignore_dependency_on_failure=True),
        FlowJob(ResizeImage, {"path": "p.png"}),
    ])  # fmt: skip
    try:
        async with runner(app):
            handle = await app.worker_service.queue_flow(flow)
            out = await node.run(
                "flow.mjs", {"workers": [{"queue": "node-images"}], "count": 2}, timeout=25
            )
            result = await handle.result(timeout=15)
            t1 = await handle.children[0].result(timeout=5)
    finally:
        await app.stop()
    by_id = {job["id"]: job for job in out["jobs"]}
    thumbs = {f"node-images:{c.id}": by_id[c.id]["returned"] for c in handle.children[:2]}
    assert t1 == by_id[handle.children[0].id]["returned"]
    assert [job["data"] for job in out["jobs"]] == [{"path": "t1.png"}, {"path": "t2.png"}]
    for job in out["jobs"]:  # Node's job.parent of a Python flow's child
        assert (job["parent"]["id"], job["parent"]["queueKey"]) == (handle.id, f"{prefix}:flows")
    resized = f"images:{handle.children[2].id}"
    assert result == {
        "day": "d",
        "widths": {resized: width("p.png")},
        "thumbnails": thumbs,
        "children": sorted([*thumbs, resized]),
        "failures": {},
    }


#: What the parent of a ok child and of a failing one does, by the failing child's option.
OPTIONS = [
    "fail_parent_on_failure",
    "continue_parent_on_failure",
    "ignore_dependency_on_failure",
    "remove_dependency_on_failure",
    None,
]


@pytest.mark.parametrize("option", OPTIONS, ids=[str(o) for o in OPTIONS])
async def test_a_failing_child_under_each_failure_option(
    prefix: str, redis_url: str, option: str | None
) -> None:
    app = make_app(prefix, redis_url)
    failing = {option: True} if option else {}
    # The failing child starts late: its parent may start at its failure
    # (continue_parent_on_failure), and must find the other child done by then.
    flow = FlowJob(BuildReport, {"day": "d"}, children=[
        FlowJob(ResizeImage, {"path": "ok.png"}),
        FlowJob(BrokenImage, {"path": "bad.png"}, delay=500, **failing),
    ])  # fmt: skip
    try:
        async with runner(app):
            handle = await app.worker_service.queue_flow(flow)
            ok, bad = handle.children
            broken = await bad.finished(timeout=15)
            if option is None:
                await asyncio.sleep(1)  # time the parent would need, if anything moved it
                state = await app.worker_service.job_state("flows", handle.id)
                with pytest.raises(TimeoutError):
                    await handle.result(timeout=0.5)
            else:
                parent = await handle.finished(timeout=15)
    finally:
        await app.stop()
    assert (broken.status, broken.reason) == ("failed", "ValueError: cannot read bad.png")
    ok_id, bad_id = f"images:{ok.id}", f"images:{bad.id}"
    if option is None:  # BullMQ: the parent waits for ever
        assert state == "waiting-children"
        assert flow_app.SEEN == []
    elif option == "fail_parent_on_failure":  # failed without running, naming the child
        assert parent.status == "failed"
        assert parent.reason is not None
        assert f"child {prefix}:{bad_id} failed" in parent.reason
        assert flow_app.SEEN == []
    else:  # the parent runs without the failed child
        assert parent.status == "completed", parent
        ignored = option != "remove_dependency_on_failure"
        failures = {bad_id: "ValueError: cannot read bad.png"} if ignored else {}
        assert parent.value == {
            "day": "d",
            "widths": {ok_id: width("ok.png")},
            "thumbnails": {},
            "children": [ok_id],
            "failures": failures,
        }


async def test_continue_parent_on_failure_starts_the_parent_at_the_failure(
    prefix: str, redis_url: str
) -> None:
    app = make_app(prefix, redis_url)
    flow = FlowJob(BuildReport, {"day": "d"}, children=[
        FlowJob(BrokenImage, {"path": "bad.png"}, continue_parent_on_failure=True),
        FlowJob(ResizeImage, {"path": "late.png"}, delay=2000),
    ])  # fmt: skip
    try:
        async with runner(app):
            handle = await app.worker_service.queue_flow(flow)
            parent = await handle.finished(timeout=10)
            late = await handle.children[1].finished(timeout=10)
    finally:
        await app.stop()
    # It ran with the failure and without the late child, which BullMQ does not let it
    # complete without: it fails as Node's would.
    bad = f"images:{handle.children[0].id}"
    [seen] = flow_app.SEEN
    assert (seen["raw"], seen["failures"]) == ({}, {bad: "ValueError: cannot read bad.png"})
    assert parent.status == "failed"
    assert parent.reason == f"Job {handle.id} has pending dependencies. moveToFinished"
    assert late.status == "completed"


# --------------------------------------------------------------------------- recording on


def store_settings(kind: str, pg_dsn: str, pg_schema: str, tmp_path: Path) -> dict[str, Any]:
    if kind == "postgres":
        return {"database_url": pg_dsn, "database_schema": pg_schema}
    return {"sqlite_path": str(tmp_path / "jobs.sqlite3")}


def jobs_show(env: dict[str, str], job_id: str, *json_flag: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bullworker", "jobs", "show", job_id, "--app", APP_SPEC, *json_flag],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


async def show(env: dict[str, str], job_id: str) -> tuple[dict[str, Any], str]:
    """``jobs show --json``'s first detail, and the text ``jobs show`` prints."""
    details = json.loads(await asyncio.to_thread(jobs_show, env, job_id, "--json"))
    return details[0], await asyncio.to_thread(jobs_show, env, job_id)


def family_rows(text: str) -> list[list[str]]:
    """The FAMILY table of ``jobs show``'s text, split in cells."""
    _, _, table = text.partition("\nFAMILY")
    return [line.split() for line in table.splitlines()[1:] if line.strip()]


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
async def test_recorded_children_carry_their_parent_and_jobs_show_the_family(
    prefix: str, redis_url: str, pg_dsn: str, pg_schema: str, tmp_path: Path, kind: str
) -> None:
    stored = store_settings(kind, pg_dsn, pg_schema, tmp_path)
    # No keep window: the children leave Redis once recorded, and are read from _jobs.
    app = make_app(
        prefix, redis_url, record_jobs=True, record_queues="node-images", keep_completed=0,
        keep_failed=0, **stored,
    )  # fmt: skip
    env = helpers.bullworker_env(
        BULL_PREFIX=prefix, BULL_QUEUE="flows", APP_ENV="production",
        **{name.upper(): value for name, value in stored.items()},
    )  # fmt: skip
    if kind == "postgres":
        store: JobStore = open_store(pg_dsn, pg_schema=pg_schema)
    else:
        store = open_store(None, sqlite_path=stored["sqlite_path"])
    node = NodeScripts(prefix, redis_url)
    flow = FlowJob(BuildReport, {"day": "d"}, children=[
        FlowJob(ResizeImage, {"path": "r.png"}),
        FlowJob.named("thumbnail", {"path": "t.png"}, queue="node-images"),
    ])  # fmt: skip
    async with store:
        try:
            # The children's queues only: the parent waits while its children are recorded.
            async with runner(app, ["images"]):
                handle = await app.worker_service.queue_flow(flow)
                resize, thumb = (f"{c.queue}:{c.id}" for c in handle.children)
                parent_id = f"flows:{handle.id}"

                async def recorded(job_id: str) -> bool:
                    gone = await app.worker_service.job_state(*job_id.split(":")) is None
                    return gone and bool(await store.get(job_id))

                await helpers.eventually(lambda: recorded(resize), 20)
                detail, text = await show(env, parent_id)
                assert detail["status"] == "waiting-children"
                assert detail["parent"] is None
                assert detail["children"] == [
                    {"id": resize, "name": "ResizeImage", "status": "completed",
                     "source": "_jobs", "dependency": "processed"},
                    {"id": thumb, "name": "thumbnail", "status": "waiting",
                     "source": "redis", "dependency": "unprocessed"},
                ]  # fmt: skip
                assert family_rows(text) == [
                    ["child", resize, "ResizeImage", "completed", "_jobs", "processed"],
                    ["child", thumb, "thumbnail", "waiting", "redis", "unprocessed"],
                ]
                await node.run(
                    "flow.mjs", {"workers": [{"queue": "node-images"}], "count": 1}, timeout=25
                )
                await helpers.eventually(lambda: recorded(thumb), 20)
                # Both children left Redis: children_values(ResizeImage) names them from _jobs.
                async with runner(app, ["flows"]):
                    result = await handle.result(timeout=15)
                    await helpers.eventually(lambda: recorded(parent_id), 20)
        finally:
            await app.stop()
        assert result["widths"] == {resize: width("r.png")}
        assert list(result["thumbnails"]) == [thumb]
        assert result["thumbnails"][thumb]["by"] == "node"
        rows = {r.id: r for r in await store.children_of(parent_id)}
        assert {job_id: r.parent for job_id, r in rows.items()} == {
            resize: parent_id, thumb: parent_id}  # fmt: skip
        [parent_row] = await store.get(parent_id)
        assert parent_row.parent is None and parent_row.status == "completed"

    detail, text = await show(env, parent_id)
    assert (detail["status"], detail["source"], detail["parent"]) == ("completed", "_jobs", None)
    assert [(c["id"], c["status"], c["source"], c["dependency"]) for c in detail["children"]] == [
        (resize, "completed", "_jobs", None), (thumb, "completed", "_jobs", None)]  # fmt: skip
    assert family_rows(text) == [
        ["child", resize, "ResizeImage", "completed", "_jobs", "-"],
        ["child", thumb, "thumbnail", "completed", "_jobs", "-"],
    ]
    detail, text = await show(env, resize)
    assert detail["parent"] == {
        "id": parent_id, "name": "BuildReport", "status": "completed", "source": "_jobs"}  # fmt: skip
    assert detail["children"] == []
    assert family_rows(text) == [["parent", parent_id, "BuildReport", "completed", "_jobs", "-"]]
