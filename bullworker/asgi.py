"""ASGI integration: run a bullworker app inside a FastAPI or Starlette app's lifespan.

::

    from fastapi import Depends, FastAPI
    from bullworker import WorkerService
    from bullworker.asgi import get_worker_service, lifespan

    api = FastAPI(lifespan=lifespan(app))  # app = create_app(...)

    @api.post("/emails")
    async def send(ws: WorkerService = Depends(get_worker_service)) -> dict[str, str]:
        return {"job_id": await ws.queue_job(SendEmailJob, {...})}

Startup enters the app as ``async with app`` does, so the runner starts in the
web process only when the config says so (``APP_ENV=development`` by default,
or ``ENABLE_JOB_RUNNER=true``); shutdown stops it within ``SHUTDOWN_GRACE``.
The WorkerService and the App are on ``request.app.state.worker_service`` and
``request.app.state.bullworker``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.requests import HTTPConnection

from bullworker.app import App
from bullworker.producer import WorkerService

__all__ = ["get_bullworker_app", "get_worker_service", "lifespan"]


def lifespan(
    app: App | Callable[[], App], *, run_worker: bool | None = None
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``.

    ``app`` is a bullworker App or a factory called at startup. ``run_worker``
    overrides the config's choice of starting the runner in this process.
    """

    @asynccontextmanager
    async def _lifespan(asgi_app: Any) -> AsyncIterator[None]:
        bullworker_app = app if isinstance(app, App) else app()
        state = getattr(asgi_app, "state", None)
        if state is not None:
            state.bullworker = bullworker_app
            state.worker_service = bullworker_app.worker_service
        try:
            await bullworker_app.start(run_worker=run_worker)
        except BaseException:
            await bullworker_app.stop()  # close what started before the failure
            raise
        try:
            yield
        finally:
            await bullworker_app.stop()

    return _lifespan


def get_bullworker_app(conn: HTTPConnection) -> App:
    """The App of the lifespan (a FastAPI dependency, or call it with a request)."""
    found = getattr(conn.app.state, "bullworker", None)
    if not isinstance(found, App):
        raise RuntimeError("no bullworker app: pass lifespan=bullworker.asgi.lifespan(app)")
    return found


def get_worker_service(conn: HTTPConnection) -> WorkerService:
    """The app's WorkerService (a FastAPI dependency, or call it with a request)."""
    return get_bullworker_app(conn).worker_service
