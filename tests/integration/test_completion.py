"""Shell completion of ``bullworker``: commands, queue names and job names.

Each case runs the installed ``bullworker`` command as bash's completion function
does (the script of ``bullworker --show-completion bash``): ``_BULLWORKER_COMPLETE``
set, the words typed so far in ``COMP_WORDS`` and the index of the word being
completed in ``COMP_CWORD``; the candidates come back one a line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import bullworker_env

ROOT = Path(__file__).resolve().parents[2]
BULLWORKER = Path(sys.executable).with_name("bullworker")
APP = "tests.integration.logging_app:app"


def complete(line: str, **env: str) -> list[str]:
    """The candidates for the last word of ``line`` (an empty one after a trailing space)."""
    words = line.split()
    if line.endswith(" "):
        words.append("")
    result = subprocess.run(
        [str(BULLWORKER)],
        cwd=ROOT,
        env={
            # No Redis is needed: completion only imports the app.
            **bullworker_env(REDIS_URL="redis://127.0.0.1:1/0", **env),
            "_BULLWORKER_COMPLETE": "complete_bash",
            "COMP_WORDS": " ".join(words),
            "COMP_CWORD": str(len(words) - 1),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [word for word in result.stdout.splitlines() if word]


def test_the_script_for_bash_calls_the_command_back() -> None:
    result = subprocess.run(
        [str(BULLWORKER), "--show-completion", "bash"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "_BULLWORKER_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _bullworker_completion bullworker" in result.stdout


def test_commands() -> None:
    assert {"start", "queue", "jobs", "stats", "retry", "doctor"} <= set(complete("bullworker "))
    assert complete("bullworker st") == ["start", "stats"]


@pytest.mark.parametrize(
    ("line", "env", "expected"),
    [
        ("bullworker queue ", {"BULLWORKER_APP": APP}, ["Fail", "LogAsync", "LogSync", "Sleep"]),
        ("bullworker queue Lo", {"BULLWORKER_APP": APP}, ["LogAsync", "LogSync"]),
        (f"bullworker queue --app {APP} S", {}, ["Sleep"]),
        ("bullworker jobs --name F", {"BULLWORKER_APP": APP}, ["Fail"]),
        (f"bullworker retry --app {APP} --name LogS", {}, ["LogSync"]),
    ],
)
def test_job_names(line: str, env: dict[str, str], expected: list[str]) -> None:
    assert complete(line, **env) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("bullworker queue LogAsync --queue ", ["default", "other", "node-only"]),
        ("bullworker queue LogAsync --queue o", ["other"]),
        ("bullworker start --queues ", ["default", "other", "node-only"]),
        ("bullworker start --queues default,", ["default,other", "default,node-only"]),
        ("bullworker start --record-queues no", ["node-only"]),
        ("bullworker jobs --queue d", ["default"]),
    ],
)
def test_queue_names(line: str, expected: list[str]) -> None:
    found = complete(line, BULLWORKER_APP=APP, RECORD_QUEUES="node-only")
    assert sorted(found) == sorted(expected)


@pytest.mark.parametrize(
    "app",
    [
        "no_such_module:app",
        "tests.integration.cli_app:not_an_app",
        "tests.integration.cli_app:nope",
    ],
)
def test_an_app_that_does_not_load_gives_no_candidates(app: str) -> None:
    assert complete(f"bullworker queue --app {app} ") == []
    assert complete("bullworker start --queues ", BULLWORKER_APP=app) == []


def test_no_app_gives_no_candidates() -> None:
    assert complete("bullworker queue ") == []
