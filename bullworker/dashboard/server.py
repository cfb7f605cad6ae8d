"""``bullworker dashboard``: serve `dashboard_app` with uvicorn, on loopback unless credentials.

`check_bind` refuses an address other than a loopback one when the dashboard has
no credentials (anyone who reaches it would see every job's data); `serve` checks,
says where it listens and whether it is read-only, and runs uvicorn until stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bullworker.app import App
from bullworker.core.errors import ConfigError
from bullworker.dashboard.access import Credentials, is_loopback
from bullworker.dashboard.web import dashboard_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def credentials_of(app: App) -> Credentials:
    config = app.config
    return Credentials(config.dashboard_token, config.dashboard_user, config.dashboard_password)


def check_bind(app: App, host: str) -> None:
    """ConfigError unless ``host`` is a loopback address or the dashboard has credentials."""
    if is_loopback(host) or credentials_of(app).configured:
        return
    raise ConfigError(
        f"refusing to serve the dashboard on {host}, which is not a loopback address, without "
        "credentials: anyone who reaches it would see every job. Set DASHBOARD_TOKEN (at least "
        "16 characters) or DASHBOARD_USER and DASHBOARD_PASSWORD, or keep --host 127.0.0.1"
    )


def serve(
    app: App,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the dashboard of ``app`` on ``host``:``port`` until SIGINT or SIGTERM."""
    check_bind(app, host)
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {port}")
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise ConfigError(
            "the dashboard needs uvicorn: pip install 'bullworker[dashboard]'"
        ) from None
    mode = "actions need credentials" if credentials_of(app).configured else "read-only"
    shown = f"[{host}]" if ":" in host else host
    say(f"bullworker dashboard on http://{shown}:{port}/ ({mode}); Ctrl-C stops it")
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    config = uvicorn.Config(
        dashboard_app(app), host=host, port=port, lifespan="on", log_level="warning",
        access_log=False, server_header=False, proxy_headers=False,
    )  # fmt: skip
    asyncio.run(uvicorn.Server(config).serve())
