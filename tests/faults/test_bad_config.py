"""Bad declarations and configuration stop ``bullworker`` at once with one clear line."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Any

import pytest

from bullworker import BaseJob, JobDefinitionError, JobRegistry, worker_job
from tests.faults.report import Scenario
from tests.faults.servers import free_port
from tests.faults.workload import APP, base_env, run_cli

GROUP = "Bad input"
SECRET = "hunter2-not-for-logs"


def one_clear_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The error line of a failed command; no traceback, no secret anywhere."""
    output = result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert len(errors) == 1, output
    assert SECRET not in output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def test_bad_cron_pattern(scenario: Scenario, prefix: str) -> None:
    """A bad cron pattern."""
    scenario.injected = "CRON_SCHEDULE = '0 25 * * *' (hour 25)"
    with pytest.raises(
        JobDefinitionError, match=re.escape("BrokenCronJob.CRON_SCHEDULE '61 * * * *'")
    ):

        @worker_job(registry=JobRegistry())
        class BrokenCronJob(BaseJob[dict[str, Any], None]):
            CRON_SCHEDULE = "61 * * * *"

            async def handle(self, data: dict[str, Any]) -> None: ...

    started = time.monotonic()
    result = run_cli(["start", "--app", "tests.faults.bad_cron_app"], base_env(prefix))
    line = one_clear_line(result, "NightlyReportJob.CRON_SCHEDULE '0 25 * * *' is invalid")
    scenario.figures(recovery=f"exit {result.returncode} after {time.monotonic() - started:.1f} s")
    scenario.explanation = (
        "Declaring the class raises `JobDefinitionError` at import, naming the class and the "
        f"pattern; `bullworker start` prints one line and exits 2: `{line}`."
    )
    assert result.returncode == 2


def test_bad_configuration(scenario: Scenario, prefix: str) -> None:
    """Bad configuration values."""
    cases = {
        "REDIS_PORT=abc": ({"REDIS_PORT": "abc"}, "REDIS_PORT='abc' is not a valid int"),
        "REDIS_URL=ftp://...": (
            {"REDIS_URL": f"ftp://user:{SECRET}@127.0.0.1/0"},
            "Redis URL must start with redis://, rediss:// or unix:// (got ftp://)",
        ),
        "DATABASE_URL=mysql://...": (
            {"DATABASE_URL": f"mysql://user:{SECRET}@127.0.0.1/db"},
            "DATABASE_URL='mysql://user:***@127.0.0.1/db' is neither",
        ),
        "LEADER_TTL=0": ({"LEADER_TTL": "0"}, "LEADER_TTL must be at least 1 second"),
        "REDIS_PASSWORD with REDIS_DB=x": (
            {"REDIS_PASSWORD": SECRET, "REDIS_DB": "x"},
            "REDIS_DB='x' is not a valid int",
        ),
    }
    scenario.injected = ", ".join(cases)
    lines = []
    for env, expected in cases.values():
        result = run_cli(["start", "--app", APP], base_env(prefix, **env))
        lines.append(one_clear_line(result, expected))
    scenario.explanation = (
        "`bullworker start` refused each at start with one line on stderr and a non-zero exit, "
        "never showing a password: " + "; ".join(f"`{line}`" for line in lines) + "."
    )


def test_unreachable_redis_with_a_password(scenario: Scenario, prefix: str) -> None:
    """Unreachable Redis, password in REDIS_URL."""
    url = f"redis://app:{SECRET}@127.0.0.1:{free_port()}/0"
    scenario.injected = "REDIS_URL=redis://app:<password>@127.0.0.1:<closed port>/0"
    scenario.settings = {"REDIS_TIMEOUT": 1}
    env = base_env(prefix, REDIS_URL=url, REDIS_TIMEOUT="1")
    started = time.monotonic()
    runner = run_cli(["start", "--app", APP], env)
    runner_took = time.monotonic() - started
    started = time.monotonic()
    queued = run_cli(["queue", "FaultJob", "--app", APP], env)
    queue_took = time.monotonic() - started
    lines = [one_clear_line(runner, "app:***@"), one_clear_line(queued, "app:***@")]
    scenario.figures(recovery=f"start exits after {runner_took:.1f} s, queue {queue_took:.1f} s")
    scenario.explanation = (
        "The port refuses connections, so both commands exit with 3 at once with one line "
        "that names the server with its password masked and what to check, and the password "
        "appears nowhere in their output: " + "; ".join(f"`{line}`" for line in lines) + "."
    )
    assert runner.returncode == queued.returncode == 3
    assert runner_took < 8 and queue_took < 8
