"""Fixtures of the dashboard's HTTP tests: a seeded app on SQLite or PostgreSQL, a client.

The client is httpx on the dashboard's ASGI app in-process, from 127.0.0.1 unless a
test says otherwise (a dashboard without credentials answers only loopback clients).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bullworker import App
from bullworker.dashboard import dashboard_app
from bullworker.history.store import JobStore, open_store
from tests.helpers import app_config
from tests.integration.dashboard_app import Seeded, make_app, seed

TOKEN = "test-dashboard-token-0123456789"


@dataclass
class Site:
    """A seeded dashboard: its app, store, what was seeded and its ASGI app."""

    app: App
    store: JobStore
    seeded: Seeded
    web: Any

    def client(self, host: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.web, client=(host, 50123))
        return httpx.AsyncClient(transport=transport, base_url="http://dash.test", headers=headers)


def settings_for(backend: str, prefix: str, tmp: str, pg_dsn: str, schema: str | None) -> Any:
    store: dict[str, Any] = {"sqlite_path": f"{tmp}/jobs.sqlite3"}
    if backend == "postgres":
        store = {"database_url": pg_dsn, "database_schema": schema}
    return {"bull_prefix": prefix, "app_env": "production", **store}


@asynccontextmanager
async def site(settings: dict[str, Any], **dashboard: Any) -> AsyncIterator[Site]:
    """Seed with one app, serve with another (as a separate process would)."""
    config = app_config(**settings)
    seeding = make_app(config)
    async with open_store(
        config.database_url, sqlite_path=config.sqlite_path, pg_schema=config.database_schema
    ) as store:
        seeded = await seed(seeding, store, rows=120)
        app = make_app(config)
        web = dashboard_app(app, **dashboard)
        try:
            yield Site(app, store, seeded, web)
        finally:
            await web.state.dashboard.close()
            await app.stop()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def ids_in(html: str, section: str) -> list[str]:
    """The job ids linked in the table of the page's ``<section id=section>``."""
    part = html.split(f'id="{section}"', 1)
    if len(part) < 2:
        return []
    body = part[1].split("</section>", 1)[0]
    return re.findall(r'<td class="id"><a href="[^"]*">([^<]+)</a>', body)
