"""The soak with faults (``python -m bench.soak``) at a tiny size: every job in ``_jobs`` exactly once.

2,000 jobs, half from Python and half from Node, through ``bullworker start
--processes 2`` on the soak's own redis-server and PostgreSQL, with a Redis
crash, a SIGKILL of the recording leader and a PostgreSQL restart on the way.
The full soak (1,000,000 jobs) is ``python -m bench.soak`` and is not part of
the tests; no figure of its is judged here, only what must hold at any size.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak_check import Fault, check_rows, explain_reruns
from bench.soak_servers import ServerError, pg_bin

ROOT = Path(__file__).resolve().parents[1]


def missing_tools() -> list[str]:
    missing = [tool for tool in ("redis-server", "node") if shutil.which(tool) is None]
    try:
        pg_bin()
    except ServerError:
        missing.append("initdb/pg_ctl (PostgreSQL server)")
    if not (ROOT / "tests" / "node" / "node_modules" / "bullmq").is_dir():
        missing.append("tests/node/node_modules (npm ci --prefix tests/node)")
    return missing


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(240)
def test_every_job_is_recorded_exactly_once_through_the_faults(tmp_path: Path) -> None:
    missing = missing_tools()
    if missing:
        message = f"the soak needs {', '.join(missing)} (scripts/system-deps installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    argv = [sys.executable, "-m", "bench.soak", "--jobs", "2000", "--lock-ms", "5000"]
    done = subprocess.run(
        [*argv, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((tmp_path / "soak.json").read_text())

    kinds = [fault["kind"] for fault in data["faults"]]
    assert kinds == ["redis-restart", "sigkill-leader", "pg-restart"]
    killed = data["faults"][1]["detail"]
    assert killed["new_leader_pid"] != killed["pid"]  # another process took the lease over

    ids = data["ids"]
    assert ids["produced"] == 2000
    assert ids["missing_ids"] == [] and ids["duplicate_ids"] == []
    assert ids["payloads_without_row"] == 0
    assert ids["exactly_once"] is True
    assert data["reruns"]["by_cause"].get("unexplained", 0) == 0, data["reruns"]["unexplained"]
    assert data["reruns"]["jobs_run"] >= 2000

    # Its own servers are stopped and their directory deleted.
    servers = data["servers"]
    assert not Path(servers["dir"]).exists()
    assert not listening(servers["redis_port"]) and not listening(servers["pg_port"])
    assert (
        "| every produced id in `_jobs` exactly once | yes |" in (tmp_path / "soak.md").read_text()
    )


def test_the_verdict_names_missing_duplicate_and_unexplained_jobs() -> None:
    produced = {"1": ("py", 0), "2": ("py", 1), "3": ("node", 0)}
    rows = [("1", "py", 0, "completed"), ("1", "py", 0, "completed"), ("4", "node", 0, "failed")]
    verdict = check_rows(produced, rows, {"py": 2, "node": 1})
    assert verdict["exactly_once"] is False
    assert verdict["missing_ids"] == ["2", "3"] and verdict["duplicate_ids"] == ["1"]
    assert verdict["extra_ids_list"] == ["4"]  # job 3's payload landed again under id 4
    assert verdict["payloads_without_row_list"] == ["py:1"]

    crash = Fault("redis-restart", 10, began=100.0, ended=101.0)
    kill = Fault("sigkill-leader", 20, began=200.0, ended=205.0, detail={"pid": 7})
    runs = {
        "a": [(7, 150.0), (8, 210.0)],  # first run in the killed process
        "b": [(8, 99.0), (9, 103.0)],  # began just before the crash
        "c": [(8, 50.0), (9, 60.0)],  # nothing explains it
        "d": [(8, 70.0)],
    }
    reruns = explain_reruns(runs, [crash, kill])
    assert reruns["by_cause"] == {"sigkill-leader": 1, "redis-restart": 1, "unexplained": 1}
    assert [r["id"] for r in reruns["unexplained"]] == ["c"]
