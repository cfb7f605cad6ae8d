"""Behaviour that depends on the redis-py version, pinned at both ends of the supported range.

pyproject.toml allows a range of redis-py; the pinned environment (requirements/dev.txt)
holds the highest tested one, and scripts/test installs the lowest one
(requirements/redis-lowest.txt) into ``.venv/redis-lowest``. Each check here runs a real
``bullworker`` process with one and with the other, so that an upstream change that
breaks a message shows up as a failing test rather than as a user's puzzle.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.servers import RedisServer
from tests.faults.workload import APP, ROOT, base_env

LOWEST = ROOT / ".venv" / "redis-lowest"


def _pinned(requirements: Path) -> str:
    """The version that a requirements file pins for redis."""
    for line in requirements.read_text().splitlines():
        if line.lower().startswith("redis=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{requirements} pins no redis version")


# (name, extra PYTHONPATH, the redis-py version that process must import)
VERSIONS = [
    ("highest", None, _pinned(ROOT / "requirements" / "dev.txt")),
    ("lowest", LOWEST, _pinned(ROOT / "requirements" / "redis-lowest.txt")),
]


def _env(prefix: str, path: Path | None, **extra: str) -> dict[str, str]:
    env = base_env(prefix, **extra)
    if path is not None:
        if not path.is_dir():
            # scripts/test installs it; never a skip, which would hide the lowest version.
            pytest.fail(f"{path} is missing: run scripts/test, which installs it")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return env


def _bullworker(args: list[str], env: dict[str, str]) -> tuple[str, int, float]:
    """The last line of stderr, the exit code and the seconds of a ``bullworker`` command."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bullworker", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    return (lines[-1] if lines else ""), result.returncode, time.monotonic() - started


@pytest.mark.parametrize(("name", "path", "version"), VERSIONS, ids=[v[0] for v in VERSIONS])
def test_tls_refusal_is_reported_with_each_redis_version(
    name: str,
    path: Path | None,
    version: str,
    redis_servers: Callable[..., RedisServer],
    tls_certs: tuple[Path, Path, Path],
    tls_client_cert: tuple[Path, Path],
    prefix: str,
) -> None:
    """A server that demands a client certificate is named as the refusal, not a timeout."""
    ca, cert, key = tls_certs
    redis = redis_servers(
        ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
         "--tls-auth-clients", "yes"], tls_ca=ca, tls_client=tls_client_cert,
    )  # fmt: skip
    env = _env(prefix, path, REDIS_PORT=str(redis.port), REDIS_TLS="true", REDIS_TIMEOUT="2",
               REDIS_TLS_CA_FILE=str(ca))  # fmt: skip
    imported = subprocess.run(
        [sys.executable, "-c", "import redis; print(redis.__version__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert imported == version, f"the {name} environment imports redis {imported}"

    for command in (["queue", "FaultJob", "--app", APP], ["start", "--app", APP]):
        line, code, seconds = _bullworker(command, env)
        assert code != 0 and line.startswith("error: "), (command, line)
        assert "CERTIFICATE_REQUIRED" in line, (redis_py := version, command, line)
        assert "did not answer" not in line, (redis_py, command, line)
        assert seconds < 8.0, (command, seconds)
