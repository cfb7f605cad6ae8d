"""``dashboard_app(app)``: the dashboard as an ASGI app, to serve or to mount.

::

    from bullworker.dashboard import dashboard_app

    api.mount("/jobs", dashboard_app(app))   # a FastAPI or Starlette service

It reads the app's Redis and ``_jobs`` store with the library's functions
(`bullworker.ops`): the same calls as the CLI's, for pages and actions alike.
Who may see and act: `access`. The store is opened at the first request that
needs it and closed when the ASGI app's lifespan ends (``bullworker dashboard``),
or by ``await dashboard.state.dashboard.close()`` in a service that mounts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from bullworker.app import App
from bullworker.core.errors import BullworkerError, QueueUnavailable, StoreUnavailable
from bullworker.dashboard import actions, pages
from bullworker.dashboard.access import Credentials, viewer
from bullworker.dashboard.render import HERE, page
from bullworker.history.store import JobStore, store_for
from bullworker.ops.queues import known_queues
from bullworker.transport.deadline import bounded
from bullworker.transport.probe import reachable_client

#: Seconds the list of queues (a SCAN of Redis) is kept between pages.
QUEUES_TTL = 10.0
#: Headers of every answer: no framing, no sniffing, only this dashboard's own files.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Dashboard:
    """What the pages share: the app, its credentials, the store, the known queues."""

    def __init__(self, app: App, credentials: Credentials) -> None:
        self.app = app
        self.config = app.config
        self.credentials = credentials
        self._store: JobStore | None = None
        self._lock = asyncio.Lock()
        self._queues: tuple[float, list[str]] | None = None

    @property
    def recording(self) -> bool:
        return bool(self.config.record_jobs)

    async def store(self) -> JobStore:
        """The app's ``_jobs`` store, opened once."""
        async with self._lock:
            if self._store is None:
                store = store_for(self.config)
                await store.open()
                self._store = store
            return self._store

    async def queues(self) -> list[str]:
        """The app's queues and those in Redis, read again every `QUEUES_TTL` seconds."""
        cached = self._queues
        if cached is not None and time.monotonic() - cached[0] < QUEUES_TTL:
            return cached[1]
        client = await reachable_client(self.config.redis_settings("bull"))
        try:
            names = await bounded(self.config, "list the queues", known_queues(self.app, client))
        finally:
            await client.aclose()
        self._queues = (time.monotonic(), names)
        return names

    def forget_queues(self) -> None:
        self._queues = None

    async def close(self) -> None:
        async with self._lock:
            store, self._store = self._store, None
        if store is not None:
            await store.close()


class _Guard:
    """ASGI middleware: security headers on every answer, the viewer of every request."""

    def __init__(self, inner: ASGIApp, dashboard: Dashboard) -> None:
        self.inner = inner
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        scope["bullworker_dashboard"] = self.dashboard

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        request = Request(scope)
        seen = viewer(self.dashboard.credentials, request)
        scope["bullworker_viewer"] = seen
        if not seen.allowed and pages.page_name(request) not in ("login", "static"):
            response = pages.refused(request, seen)
            await response(scope, receive, with_headers)
            return
        await self.inner(scope, receive, with_headers)


async def _error(request: Request, exc: Exception) -> Response:
    """A BullworkerError as a page: 503 when Redis or the database does not answer."""
    status = 503 if isinstance(exc, QueueUnavailable | StoreUnavailable) else 400
    if "no job" in str(exc) or "no queue" in str(exc):
        status = 404
    return page(request, "error.html", status, title="error", message=str(exc))


def dashboard_app(
    app: App,
    *,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI app (Starlette), with relative links only.

    The credentials default to the app's settings (``DASHBOARD_TOKEN``,
    ``DASHBOARD_USER``, ``DASHBOARD_PASSWORD``). Without any, it is read-only and
    answers only requests from loopback addresses (docs/dashboard.md).
    """
    config = app.config
    credentials = Credentials(
        token=token if token is not None else config.dashboard_token,
        user=user if user is not None else config.dashboard_user,
        password=password if password is not None else config.dashboard_password,
    )
    dashboard = Dashboard(app, credentials)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await dashboard.close()

    routes = [
        Route("/", pages.overview),
        Route("/jobs", pages.jobs),
        Route("/job", pages.job),
        Route("/schedules", pages.schedules),
        Route("/failures", pages.failures),
        Route("/action", actions.action, methods=["POST"]),
        Route("/login", actions.login_page, methods=["GET"]),
        Route("/login", actions.login, methods=["POST"]),
        Route("/logout", actions.logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    web = Starlette(
        routes=routes,
        middleware=[Middleware(_Guard, dashboard=dashboard)],
        lifespan=lifespan,
        exception_handlers={BullworkerError: _error},
    )
    web.state.dashboard = dashboard
    return web
