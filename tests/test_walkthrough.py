"""A newcomer's first hour, from a fresh virtual environment, following only the README.

The README's install commands run in a new virtual environment (``bullworker`` is installed
from this checkout at the pinned versions, as the package index would serve it), then its tour
runs with that environment's ``bullworker`` and ``python`` (tests/test_docs.py:`run_tour`).
Then the mistakes of a first hour, each against that environment: Redis stopped, PostgreSQL
not there, a mistyped option, an app that cannot be imported, a bad setting. Each must be one
clear line on stderr, within 2 seconds, with the exit code of docs/errors.md.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import bullworker_env
from tests.test_docs import ROOT, read_blocks, run_tour, shell_lines

#: Exit codes of docs/errors.md.
FAILED, USAGE, CANNOT_CONNECT, CONFIGURATION = 1, 2, 3, 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment where the README's install commands ran; its bin dir."""
    home = tmp_path_factory.mktemp("walkthrough")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
    bin_dir = home / "venv" / "bin"
    readme = ROOT / "README.md"
    install = next(b for b in read_blocks(readme) if b.language == "sh" and "pip install" in b.text)
    for line in shell_lines(install.text):
        argv = shlex.split(line, comments=True)
        assert argv[:2] == ["pip", "install"], f"README install: {line}"
        # This checkout stands for the released package, at the versions CI pins.
        wanted = [re.sub(r"^bullworker", str(ROOT), arg) for arg in argv[2:]]
        subprocess.run(
            [str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", "-c", str(ROOT / "requirements" / "dev.txt"), *wanted],
            check=True, cwd=home,
        )  # fmt: skip
    print(f"\nwalkthrough: fresh environment installed in {time.monotonic() - started:.1f} s")
    yield bin_dir


@pytest.mark.node
@pytest.mark.timeout(300)
def test_the_readme_works_from_a_fresh_environment(venv: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    version = subprocess.run(
        [str(venv / "bullworker"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("bullworker "), version.stdout
    run_tour(tmp_path, venv)
    print(f"walkthrough: the README tour took {time.monotonic() - started:.1f} s")


@pytest.fixture
def stopped_redis(tmp_path: Path) -> Iterator[str]:
    """The URL of a Redis that ran and was stopped: nothing listens there any more."""
    port = _free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(10)
    yield f"redis://127.0.0.1:{port}/0"


def _app(tmp_path: Path) -> Path:
    """The README's tasks.py, written where the commands run."""
    block = next(b for b in read_blocks(ROOT / "README.md") if b.named_file == "tasks.py")
    (tmp_path / "tasks.py").write_text(block.text)
    return tmp_path


def _bullworker(venv: Path, cwd: Path, args: list[str], **env: str) -> tuple[list[str], int, float]:
    started = time.monotonic()
    out = subprocess.run(
        [str(venv / "bullworker"), *args], cwd=cwd, env=bullworker_env(**env),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return out.stderr.strip().splitlines(), out.returncode, time.monotonic() - started


APP = ["--app", "tasks:app"]
#: (what a newcomer did, the command, its environment, the exit code, words the line must hold)
MISTAKES: list[tuple[str, list[str], dict[str, str], int, tuple[str, ...]]] = [
    ("queue with Redis stopped", ["queue", "SayHello", "--data", '{"name": "A"}', *APP],
     {"REDIS_URL": "<stopped>"}, CANNOT_CONNECT, ("<host:port>", "refused")),
    ("stats with Redis stopped", ["stats", *APP], {"REDIS_URL": "<stopped>"}, CANNOT_CONNECT,
     ("<host:port>", "refused")),
    ("retry with Redis stopped", ["retry", "--id", "default:1", *APP], {"REDIS_URL": "<stopped>"},
     CANNOT_CONNECT, ("<host:port>", "refused")),
    ("start with Redis stopped", ["start", *APP], {"REDIS_URL": "<stopped>"}, CANNOT_CONNECT,
     ("<host:port>", "refused")),
    ("jobs with PostgreSQL not there", ["jobs", *APP],
     {"DATABASE_URL": "postgresql://u:secret@127.0.0.1:<free>/db"}, CANNOT_CONNECT,
     ("127.0.0.1:<free>", "refused")),
    ("a mistyped option", ["start", "--concurency", "2", *APP], {}, USAGE, ("--concurency",)),
    ("a value out of range", ["start", "--concurrency", "0", *APP], {}, USAGE, ("--concurrency",)),
    ("an app module that does not exist", ["stats", "--app", "taks:app"], {}, USAGE, ("taks",)),
    ("a bad setting", ["stats", *APP], {"REDIS_URL": "http://127.0.0.1:6379"}, CONFIGURATION,
     ("REDIS_URL",)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "env", "code", "words"),
    [pytest.param(*m[1:], id=m[0]) for m in MISTAKES],
)
def test_each_first_hour_mistake_is_one_clear_line(
    venv: Path,
    tmp_path: Path,
    stopped_redis: str,
    command: list[str],
    env: dict[str, str],
    code: int,
    words: tuple[str, ...],
) -> None:
    host_port = stopped_redis.split("//")[1].split("/")[0]
    free = str(_free_port())
    env = {k: v.replace("<stopped>", stopped_redis).replace("<free>", free) for k, v in env.items()}
    lines, returncode, seconds = _bullworker(venv, _app(tmp_path), command, **env)
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    assert returncode == code, (returncode, lines)
    assert seconds < 2.0, (seconds, lines)
    for word in words:
        word = word.replace("<host:port>", host_port).replace("<free>", free)
        assert word in errors[0], (word, errors[0])
    assert "secret" not in "\n".join(lines)
