"""Metrics of ``bullworker start``: --metrics-port, several processes, clear errors."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import bull_queue, bullworker_env, wait_finished
from tests.integration.metrics_support import http_get, scrape, value, wait_ready

ROOT = Path(__file__).resolve().parents[2]
CLI_APP = "tests.integration.cli_app:app"


def free_ports(count: int) -> int:
    """A port P such that P .. P+count-1 are free right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no free ports")


def cli_env(prefix: str, **extra: str) -> dict[str, str]:
    base = {"BULL_PREFIX": prefix, "APP_ENV": "production", "RECORD_JOBS": "false"}
    return bullworker_env(**{**base, **extra})


def start_cli(prefix: str, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bullworker", "start", "--app", CLI_APP, *args],
        cwd=ROOT,
        env=cli_env(prefix, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def stop_cli(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


async def test_cli_metrics_port_serves_metrics_and_probes(prefix: str) -> None:
    port = free_ports(1)
    proc = start_cli(prefix, "--metrics-port", str(port), SHUTDOWN_GRACE="2")
    try:
        await wait_ready(port)
        assert (await asyncio.to_thread(http_get, port, "/healthz"))[0] == 200
        async with bull_queue("default", prefix) as queue:
            added = await queue.add("CliEmail", {"to": "m@x.y", "subject": "S"})
            assert (await wait_finished(queue, added.id)).returnvalue == "sent to m@x.y"
        samples = await scrape(port)
        done = {"queue": "default", "name": "CliEmail", "outcome": "completed"}
        assert value(samples, "bullworker_jobs_total", **done) == 1
    finally:
        output = await stop_cli(proc)
    assert f"serving metrics on http://0.0.0.0:{port}/metrics" in output


async def test_cli_processes_serve_metrics_on_consecutive_ports(prefix: str) -> None:
    port = free_ports(2)
    proc = start_cli(
        prefix, "--processes", "2", SHUTDOWN_GRACE="2", BULLWORKER_METRICS_PORT=str(port)
    )
    try:
        await wait_ready(port)
        await wait_ready(port + 1)
        for each in (port, port + 1):
            samples = await scrape(each)
            assert value(samples, "bullworker_event_loop_lag_seconds") is not None
    finally:
        await stop_cli(proc)


def test_cli_without_prometheus_client_says_what_to_install(prefix: str) -> None:
    hide = (
        "import sys; sys.modules['prometheus_client'] = None; "
        "from bullworker.cli import main; sys.argv[0] = 'bullworker'; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide, "start", "--metrics-port", "9", "--app", CLI_APP],
        cwd=ROOT,
        env=cli_env(prefix),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 4  # configuration: an extra to install
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "error: metrics need the prometheus_client package: pip install 'bullworker[metrics]'"
    ]


async def test_cli_metrics_port_in_use_is_one_clear_error(prefix: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bullworker", "start", "--app", CLI_APP, "--metrics-port", str(port)],
            cwd=ROOT, env=cli_env(prefix), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 4  # configuration: choose another port
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: cannot serve metrics on 0.0.0.0:{port}: Address already in use"]


def test_import_bullworker_does_not_load_prometheus_client() -> None:
    check = "import sys, bullworker, bullworker.cli; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "False", result.stderr
