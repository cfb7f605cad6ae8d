"""The BullMQ seam: every internal bullworker relies on exists, and a wrong bullmq is refused.

An upgrade of bullmq that renames one of the internals listed in
``bullmq_compat.REQUIRED`` fails a test here, not a runner in production. A
real older bullmq (``.venv/bullmq-unsupported``, installed by scripts/test) shows
that ``bullworker start`` refuses it in one line, before it touches Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from bullworker.core.errors import BullmqIncompatible, BullworkerError
from bullworker.transport import bullmq_compat
from tests.helpers import bullworker_env

ROOT = Path(__file__).resolve().parents[1]
UNSUPPORTED = ROOT / ".venv" / "bullmq-unsupported"


@pytest.mark.parametrize(
    ("owner", "attribute"),
    bullmq_compat.REQUIRED,
    ids=[bullmq_compat._name(o, a) for o, a in bullmq_compat.REQUIRED],
)
def test_each_relied_on_internal_exists(owner: str, attribute: str) -> None:
    assert bullmq_compat.present(owner, attribute)


def test_the_installed_bullmq_passes_the_check() -> None:
    assert bullmq_compat.check_bullmq() == []
    bullmq_compat.require_bullmq()


def test_the_supported_range_is_pyprojects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"bullmq{bullmq_compat.SUPPORTED}" in project["dependencies"]


@pytest.mark.parametrize(
    ("version", "ok"),
    [("3.4.4", True), ("3.4.10", True), ("3.4.4.post1", True), ("3.4.3", False),
     ("3.3.4", False), ("3.5.0", False), ("3.5.0rc1", False), ("2.26.0", False), ("x", False)],
)  # fmt: skip
def test_supported_versions(version: str, ok: bool) -> None:
    assert bullmq_compat.supported(version) is ok


def test_the_check_reads_what_it_cannot_find() -> None:
    assert not bullmq_compat.present("bullmq.worker:Worker", "noSuchAttribute")
    assert not bullmq_compat.present("bullmq.no_such_module:Worker", "run")
    assert not bullmq_compat.present("bullmq.worker:NoSuchClass", "run")
    # An attribute the constructor sets, a parameter of a method.
    assert bullmq_compat.present("bullmq.worker:Worker", "processing")
    assert not bullmq_compat.present("bullmq.worker:Worker.processJob", "no_such_parameter")


def test_a_missing_internal_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    required = (*bullmq_compat.REQUIRED, ("bullmq.worker:Worker", "fetchNextJob"))
    monkeypatch.setattr(bullmq_compat, "REQUIRED", required)
    monkeypatch.setattr(bullmq_compat, "installed_version", lambda: "3.4.9")
    assert bullmq_compat.check_bullmq() == ["bullmq 3.4.9 lacks Worker.fetchNextJob"]
    with pytest.raises(BullmqIncompatible) as caught:
        bullmq_compat.require_bullmq()
    assert isinstance(caught.value, BullworkerError)
    assert str(caught.value) == (
        "bullmq 3.4.9 cannot be used: bullworker supports bullmq>=3.4.4,<3.5; "
        "it lacks Worker.fetchNextJob"
    )


def test_a_version_outside_the_range_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bullmq_compat, "installed_version", lambda: "3.5.1")
    assert bullmq_compat.check_bullmq() == [
        "bullmq 3.5.1 is outside the supported range >=3.4.4,<3.5"
    ]
    with pytest.raises(BullmqIncompatible, match=r"^bullmq 3\.5\.1 cannot be used: .*<3\.5$"):
        bullmq_compat.require_bullmq()


def _pinned(requirements: Path) -> str:
    for line in requirements.read_text().splitlines():
        if line.lower().startswith("bullmq=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{requirements} pins no bullmq version")


def test_start_refuses_an_unsupported_bullmq() -> None:
    """A real older bullmq: one ``error:`` line naming it, a non-zero exit, within seconds."""
    if not UNSUPPORTED.is_dir():
        # scripts/test installs it; never a skip, which would hide the refusal.
        pytest.fail(f"{UNSUPPORTED} is missing: run scripts/test, which installs it")
    version = _pinned(ROOT / "requirements" / "bullmq-unsupported.txt")
    # No Redis answers here: the refusal must come before any connection.
    env = bullworker_env(REDIS_URL="redis://127.0.0.1:1/0", APP_ENV="production")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(UNSUPPORTED), env.get("PYTHONPATH")]))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bullworker", "start", "--app", "tests.faults.fault_app:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0, result.stderr
    assert errors == [
        f"error: bullmq {version} cannot be used: bullworker supports bullmq>=3.4.4,<3.5"
    ], result.stderr
    assert elapsed < 10, elapsed
