"""The benchmark suite runs end to end (``python -m bench --smoke``): every section, small sizes.

No target is judged here (a smoke run is far too small and this machine too
noisy); the full benchmark is ``python -m bench`` and is not part of the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PG_DSN, REDIS_URL

ROOT = Path(__file__).resolve().parents[1]


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


@pytest.mark.timeout(300)
def test_every_section_runs_and_gives_figures(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BULLWORKER_BENCH_REDIS_URL": REDIS_URL,
        "BULLWORKER_BENCH_DATABASE_URL": PG_DSN,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    assert data["smoke"] is True
    assert data["errors"] == {}
    s = data["sections"]
    assert set(s) == {
        "startup",
        "enqueue",
        "throughput",
        "scaling",
        "recorder",
        "memory",
        "profile",
        "dashboard",
        "pickup",
        "history",
    }

    for workload in ("noop", "sleep"):
        w = s["throughput"]["workloads"][workload]
        for variant in ("raw", "bullworker", "bullworker+rec"):
            assert positive(w[variant]["jobs_per_s"]), (workload, variant)
        assert positive(w["ratios"]["bullworker/raw"]["ratio"])
        if s["throughput"]["node"] == "ran":
            assert positive(w["ratios"]["bullworker/node"]["ratio"])
        assert positive(s["scaling"]["workloads"][workload]["speedup"])
        if os.environ.get("CI") == "true":  # the peers' virtualenv must be installable in CI
            assert s["throughput"]["peers"] == "ran", s["throughput"]["peers"]
        if s["throughput"]["peers"] == "ran":
            for peer in ("taskiq", "dramatiq"):
                assert positive(w[peer]["jobs_per_s"]), (workload, peer)
            assert positive(w["ratios"]["bullworker+rec/fastest peer"]["ratio"])

    history = s["history"]["levels"]
    assert [level["rows"] >= int(size) for size, level in history.items()] == [True] * 3
    assert all(positive(level["insert"]["rows_per_s"]) for level in history.values())

    pickup = s["pickup"]
    for kind in ("idle", "first_job"):
        assert positive(pickup[kind]["bullworker"]["median_ms"]), kind
        assert pickup[kind]["bullworker"]["p99_ms"] >= pickup[kind]["bullworker"]["median_ms"]
    assert pickup["idle"]["bullworker"]["n"] == pickup["idle_jobs"]
    assert positive(pickup["first_job"]["bullworker (/readyz)"]["median_ms"])

    e2e, alone = s["recorder"]["end_to_end"], s["recorder"]["recorder_alone"]
    assert e2e["rows"] == e2e["jobs"]  # every job recorded once
    assert e2e["lag_p99_s"] >= 0
    assert alone["rows"] == alone["backlog"] and alone["left_in_redis"] == 0
    assert positive(alone["rows_per_s"])

    assert positive(s["enqueue"]["queue_job/Queue.add"]["ratio"])
    assert positive(s["enqueue"]["queue_jobs/addBulk"]["ratio"])
    assert [p["jobs"] for p in s["memory"]["points"]] == [0, 200, 600]
    assert all(positive(p["rss_kib"]) for p in s["memory"]["points"])
    assert positive(s["startup"]["bullworker --help"]["median_ms"])
    assert {t["item"] for t in data["targets"]} == {"1", "3", "4", "5", "6", "15"}
    dashboard = s["dashboard"]
    assert dashboard["rows"] > 0 and len(dashboard["pages"]) >= 6
    assert all(positive(page["p95_ms"]) for page in dashboard["pages"].values())

    report = (tmp_path / "benchmarks.md").read_text()
    assert "## Machine and versions" in report and "## What the time goes to" in report
