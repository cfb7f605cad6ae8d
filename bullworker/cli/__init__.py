"""The ``bullworker`` command: parses arguments, calls the library, prints the result.

Each module registers its commands on :data:`bullworker.cli.app.cli`; to add a
command, write it in the module of its group (or a new one imported here).
"""

from __future__ import annotations

# The order of registration is the order of --help: start, queue and schedules first.
from bullworker.cli import run

# isort: split
from bullworker.cli import ops

# isort: split
from bullworker.cli import history  # `jobs partition`, after the other `jobs` commands

# isort: split
from bullworker.cli import queues

# isort: split
from bullworker.cli import contracts, dashboard
from bullworker.cli.app import cli, run_cli

__all__ = ["cli", "contracts", "dashboard", "history", "main", "ops", "queues", "run"]


def main() -> None:
    """Console-script entry point: exits with the status of docs/errors.md's table."""
    raise SystemExit(run_cli())
