"""``bullworker dashboard``: serve the web dashboard (docs/dashboard.md).

It parses the options, loads the app and calls `bullworker.dashboard.server.serve`.
Importing this module registers the command on the ``bullworker`` command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bullworker.cli.app import AppOption, cli, load
from bullworker.core.errors import ConfigError


@cli.command("dashboard")
def dashboard(
    app: AppOption = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="The address to listen on. Other than a loopback address it needs "
            "DASHBOARD_TOKEN or DASHBOARD_USER and DASHBOARD_PASSWORD.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.")] = 8787,
) -> None:
    """Serve the web dashboard: queues, jobs, failures and schedules, with actions.

    Without credentials it is read-only and listens only on a loopback address.
    """
    try:
        from bullworker.dashboard.server import serve
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the dashboard needs {exc.name}: pip install 'bullworker[dashboard]'"
        ) from None
    serve(load(app), host=host, port=port, say=typer.echo)
