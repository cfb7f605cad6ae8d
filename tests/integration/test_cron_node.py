"""Cron shared with Node: cron-parser's fire times, and schedules advanced across languages.

The Node tests need ``npm ci --prefix tests/node`` (they fail, never skip, without it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import statistics
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from bullworker import BaseJob, JobRegistry, worker_job
from bullworker.core.cron import next_fire_times
from bullworker.runtime.cron import CronService
from tests.helpers import bull_queue, node_env
from tests.integration.cron_support import (
    ROOT,
    config_for,
    finished_runs,
    lateness,
    report,
    running,
    schedulers,
    tick_of,
)

pytestmark = pytest.mark.timeout(60)


NODE_DIR = ROOT / "tests" / "node"


# --- Node interop ----------------------------------------------------------------------


async def run_node(script: str, prefix: str, queue: str, spec: dict[str, Any]) -> Any:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the cron interop tests need Node.js 20+")
    if not (NODE_DIR / "node_modules" / "bullmq" / "package.json").is_file():
        pytest.fail("run `npm ci --prefix tests/node` first", pytrace=False)
    proc = await asyncio.create_subprocess_exec(
        node, script, json.dumps(spec), cwd=NODE_DIR, env=node_env(prefix, queue),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"node {script}: {out.decode()} {err.decode()}"
    return json.loads(out.decode().strip().splitlines()[-1])


DST_PATTERNS = [
    "0 0 * * * *", "0 30 * * * *", "0 */20 * * * *", "0 */7 * * * *", "0 0 */2 * * *",
    "0 0 1-3 * * *", "0 15 2 * * *", "0 30 2 * * *", "0 0 3 * * *", "0 45 1 * * *",
    "0 0 0-23 * * *", "30 59 * * * *", "0 0 0 * * *", "0 30 2 * * 0", "0 0 2,3 * * *",
    "*/15 * 2 * * *",
]  # fmt: skip
#: A moment a few hours before each DST change of 2026 (spring, then autumn).
DST_EVES = {
    "Europe/Stockholm": ["2026-03-28T22:00:00Z", "2026-10-24T22:00:00Z"],
    "America/New_York": ["2026-03-08T03:00:00Z", "2026-11-01T02:00:00Z"],
    "Australia/Sydney": ["2026-10-03T12:00:00Z", "2026-04-04T12:00:00Z"],
}


def test_fire_times_match_node_cron_parser_around_dst() -> None:
    # Skipped and repeated hours, hourly and sub-hourly patterns, both hemispheres:
    # 12 fire times per case from bullworker and from Node's cron-parser must be equal.
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the cron interop tests need Node.js 20+")
    cases = [
        {"pattern": pattern, "tz": tz, "after": after, "count": 12}
        for pattern in DST_PATTERNS
        for tz, eves in DST_EVES.items()
        for after in eves
    ]
    out = subprocess.run(
        [node, "cron_times.mjs", json.dumps(cases)],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    expected = json.loads(out)
    differ = []
    for case, node_times in zip(cases, expected, strict=True):
        after = datetime.fromisoformat(case["after"])
        runs = next_fire_times(case["pattern"], case["tz"], case["count"], after=after)
        ours = [t.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z" for t in runs]
        if ours != node_times:
            differ.append((case, ours, node_times))
    assert len(cases) == 96 and differ == []


py_side = JobRegistry()


@worker_job(registry=py_side)
class EveryTwo(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "cron-node"
    CRON_SCHEDULE = "*/2 * * * * *"  # seconds first: even seconds only
    CRON_TZ = "Asia/Kolkata"
    CRON_DATA = {"from": "python"}  # noqa: RUF012

    async def handle(self, data: dict[str, Any]) -> None: ...


@worker_job(registry=py_side)
class NodeTick(BaseJob[dict[str, Any], dict[str, Any]]):
    """Scheduled by Node, run by Python."""

    QUEUE_NAME = "cron-node"

    async def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"by": "python", "got": data}


def assert_two_second_grid(ticks: list[int]) -> None:
    assert len(ticks) >= 3, ticks
    assert all(t % 2000 == 0 for t in ticks), ticks  # even seconds: read seconds first
    assert [b - a for a, b in itertools.pairwise(ticks)] == [2000] * (len(ticks) - 1)


@pytest.mark.node
async def test_node_worker_advances_a_schedule_python_created(prefix: str) -> None:
    py_only = JobRegistry()
    py_only.register(EveryTwo)
    await CronService(config_for(prefix), py_only, ["cron-node"]).start()
    result = await run_node("cron_worker.mjs", prefix, "cron-node", {"durationMs": 7000})
    assert result["failed"] == []
    jobs = result["jobs"]
    assert {(j["name"], j["repeatJobKey"]) for j in jobs} == {("EveryTwo", "bw:cron:EveryTwo")}
    assert all(j["data"] == {"from": "python"} for j in jobs)
    ticks = [tick_of(j["id"]) for j in jobs]
    assert_two_second_grid(ticks)
    late = [j["processedOn"] - tick_of(j["id"]) for j in jobs]
    report("Python schedule, Node worker, */2 * * * * *", late)
    assert statistics.median(late) < 400
    async with bull_queue("cron-node", prefix) as queue:
        record = await queue.getJobScheduler("bw:cron:EveryTwo")
    assert record["next"] == ticks[-1] + 2000  # Node computed the same next tick


@pytest.mark.node
async def test_python_worker_advances_a_schedule_node_created(prefix: str) -> None:
    far = [
        ("node-daily", "0 30 9 * * *", "Europe/Stockholm"),
        ("node-weekly", "15 10 * * 1", "America/New_York"),
        ("node-monthly", "0 0 0 1 * *", "Australia/Adelaide"),
    ]
    spec = {
        "schedulers": [
            {"id": "node-every-2", "pattern": "*/2 * * * * *", "tz": "America/New_York",
             "name": "NodeTick", "data": {"from": "node"}},
            *({"id": i, "pattern": p, "tz": tz, "name": "NodeTick"} for i, p, tz in far),
        ]
    }  # fmt: skip
    stored = (await run_node("cron_upsert.mjs", prefix, "cron-node", spec))["schedulers"]
    for (_, pattern, tz), record in zip(far, stored[1:], strict=True):
        [python_next] = next_fire_times(pattern, tz, 1)
        assert record["next"] == int(python_next.timestamp() * 1000), (pattern, tz)
    nodetick_only = JobRegistry()
    nodetick_only.register(NodeTick)
    async with running(prefix, nodetick_only):
        await asyncio.sleep(6.5)
    async with bull_queue("cron-node", prefix) as queue:
        jobs = await finished_runs(queue, "NodeTick")
        left = await schedulers(queue)
    assert sorted(left) == sorted(["node-every-2", *(i for i, _, _ in far)])  # not ours: kept
    assert all(j.data == {"from": "node"} and j.repeatJobKey == "node-every-2" for j in jobs)
    ticks = [tick_of(j.id) for j in jobs]
    assert_two_second_grid(ticks)
    late = lateness(jobs)
    report("Node schedule, Python worker, */2 * * * * *", late)
    assert statistics.median(late) < 400
    assert left["node-every-2"]["next"] == ticks[-1] + 2000  # Python computed the same next
