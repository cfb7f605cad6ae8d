"""Who may see and act on the dashboard: read-only without credentials, loopback only then,
tokens, basic auth, sessions, CSRF, no secrets shown, and the refusal to bind elsewhere."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from bullworker import AppConfig
from bullworker.core.errors import ConfigError
from bullworker.dashboard import dashboard_app
from bullworker.dashboard.server import check_bind
from bullworker.ops.retry import retry_job_id
from bullworker.transport.connection import close_queue, open_queue
from tests.helpers import app_config, bullworker_env
from tests.integration.dashboard_app import make_app
from tests.integration.dashboard_support import TOKEN, Site, csrf_of, settings_for, site

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def open_site(prefix: str, tmp_path: Path, pg_dsn: str) -> AsyncIterator[Site]:
    """A dashboard without credentials, on SQLite."""
    async with site(settings_for("sqlite", prefix, str(tmp_path), pg_dsn, None)) as found:
        yield found


@pytest.fixture
async def token_site(prefix: str, tmp_path: Path, pg_dsn: str) -> AsyncIterator[Site]:
    settings = settings_for("sqlite", prefix, str(tmp_path), pg_dsn, None)
    async with site({**settings, "dashboard_token": TOKEN}) as found:
        yield found


async def test_without_credentials_it_is_read_only(open_site: Site) -> None:
    s = open_site.seeded
    async with open_site.client() as client:
        for path, params in (
            ("/", {}),
            ("/jobs", {"state": "failed"}),
            ("/job", {"id": s.failed_id}),
        ):
            answer = await client.get(path, params=params)
            assert answer.status_code == 200
            assert 'name="do"' not in answer.text, f"{path} shows an action"
            assert "read-only" in answer.text
        csrf = client.cookies["bw_dashboard_csrf"]  # the cookie is set, though no form needs it
        form = {"do": "pause", "queue": "emails", "csrf": csrf, "confirm": "yes"}
        refused = await client.post("/action", data=form)
        assert refused.status_code == 403 and "read-only" in refused.text
        retry = {"do": "retry", "id": s.failed_id, "csrf": csrf, "confirm": "yes"}
        assert (await client.post("/action", data=retry)).status_code == 403
    [failed] = await open_site.store.get(s.failed_id)
    assert await open_site.app.worker_service.job_state("emails", retry_job_id(failed)) is None
    queue = open_queue(open_site.app.config, "emails")
    try:
        assert not await queue.isPaused()
    finally:
        await close_queue(queue, 5)


async def test_without_credentials_only_loopback_clients(open_site: Site) -> None:
    for host in ("10.1.2.3", "192.168.1.20", "203.0.113.9", "testclient"):
        async with open_site.client(host=host) as client:
            answer = await client.get("/")
            assert answer.status_code == 403, host
            assert "answers only requests from this machine" in answer.text
            assert 'data-queue="emails"' not in answer.text
    for host in ("127.0.0.1", "::1", "127.0.0.5"):
        async with open_site.client(host=host) as client:
            assert (await client.get("/")).status_code == 200, host


async def test_a_token_guards_every_page(token_site: Site) -> None:
    s = token_site.seeded
    async with token_site.client(host="10.1.2.3") as client:  # any address, with credentials
        for path in ("/", "/jobs", f"/job?id={s.failed_id}", "/schedules", "/failures"):
            answer = await client.get(path)
            assert answer.status_code == 401, path
            assert 'name="token"' in answer.text and 'data-queue="emails"' not in answer.text
            assert "www-authenticate" not in answer.headers  # no basic auth configured
        wrong = await client.get("/", headers={"authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
        bearer = await client.get("/", headers={"authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200 and 'name="do" value="pause"' in bearer.text
        assert (await client.get("/static/dashboard.css")).status_code == 200

        login = await client.get("/login")
        csrf = csrf_of(login.text)
        bad = await client.post("/login", data={"token": "nope-nope-nope-nope", "csrf": csrf})
        assert bad.status_code == 401 and "not the dashboard's token" in bad.text
        good = await client.post("/login", data={"token": TOKEN, "csrf": csrf})
        assert good.status_code == 303 and good.headers["location"] == "./"
        cookie = good.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
        signed_in = await client.get("/")
        assert signed_in.status_code == 200 and "sign out" in signed_in.text
        out = await client.post("/logout", data={"csrf": csrf_of(signed_in.text)})
        assert out.status_code == 303
        assert (await client.get("/")).status_code == 401


async def test_basic_auth(prefix: str, tmp_path: Path, pg_dsn: str) -> None:
    settings = settings_for("sqlite", prefix, str(tmp_path), pg_dsn, None)
    creds = {"dashboard_user": "ops", "dashboard_password": "correct horse battery"}
    async with site({**settings, **creds}) as found, found.client() as client:
        answer = await client.get("/")
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == 'Basic realm="bullworker dashboard"'
        good = base64.b64encode(b"ops:correct horse battery").decode()
        assert (
            await client.get("/", headers={"authorization": f"Basic {good}"})
        ).status_code == 200
        for wrong in (b"ops:wrong", b"other:correct horse battery", b"nocolon"):
            header = f"Basic {base64.b64encode(wrong).decode()}"
            assert (await client.get("/", headers={"authorization": header})).status_code == 401
        assert (await client.get("/", headers={"authorization": "Basic !!!"})).status_code == 401


async def test_csrf(token_site: Site) -> None:
    s = token_site.seeded
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with token_site.client(**auth) as client:
        page = await client.get("/job", params={"id": s.failed_id})
        csrf = csrf_of(page.text)
        form = {"do": "retry", "id": s.failed_id, "confirm": "yes"}
        missing = await client.post("/action", data=form)
        assert missing.status_code == 403 and "CSRF" in missing.text
        wrong = await client.post("/action", data={**form, "csrf": "x" * 43})
        assert wrong.status_code == 403
        foreign = await client.post(
            "/action", data={**form, "csrf": csrf}, headers={"origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        cross = await client.post(
            "/action", data={**form, "csrf": csrf}, headers={"sec-fetch-site": "cross-site"}
        )
        assert cross.status_code == 403
        client.cookies.clear()  # the form's token without its cookie
        assert (await client.post("/action", data={**form, "csrf": csrf})).status_code == 403
    [failed] = await token_site.store.get(s.failed_id)
    assert await token_site.store.retries_of(s.failed_id) == []
    assert await token_site.app.worker_service.job_state("emails", retry_job_id(failed)) is None


async def test_security_headers_and_no_secrets(prefix: str, tmp_path: Path, pg_dsn: str) -> None:
    """A password in DATABASE_URL (PostgreSQL's trust auth ignores it) is never shown, nor is
    it when the database is down."""
    with_password = re.sub(r"://([^@/:]+)@", r"://\1:s3cret-pw@", pg_dsn)
    assert "s3cret-pw" in with_password
    schema = f"bwdash_{prefix.rsplit('-', 1)[1]}"
    settings = {"bull_prefix": prefix, "app_env": "production", "database_url": with_password,
                "database_schema": schema}  # fmt: skip
    try:
        async with site(settings) as found, found.client() as client:
            answer = await client.get("/")
            assert answer.headers["x-frame-options"] == "DENY"
            assert "script-src 'self'" in answer.headers["content-security-policy"]
            for path in ("/", "/jobs", "/failures", "/schedules"):
                text = (await client.get(path)).text
                assert "s3cret-pw" not in text and "127.0.0.1" not in text
        down = app_config(bull_prefix=prefix, database_url="postgresql://u:s3cret-pw@127.0.0.1:1/x")
        web = dashboard_app(make_app(down))
        from tests.integration.dashboard_support import Site as _Site

        probe = _Site(make_app(down), None, None, web)  # type: ignore[arg-type]
        async with probe.client() as client:
            answer = await client.get("/jobs")
            assert answer.status_code == 200 and "cannot connect to PostgreSQL" in answer.text
            assert "s3cret-pw" not in answer.text and "127.0.0.1:1" not in answer.text
            job = await client.get("/job", params={"id": "emails:1"})
            assert job.status_code == 503 and "s3cret-pw" not in job.text
    finally:
        import psycopg

        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_mounted_under_a_path(open_site: Site) -> None:
    outer = Starlette(routes=[Mount("/ops/jobs", app=open_site.web)])
    site_ = Site(open_site.app, open_site.store, open_site.seeded, outer)
    async with site_.client() as client:
        bare = await client.get("/ops/jobs")
        assert bare.status_code in (301, 302, 307, 308)
        assert bare.headers["location"].endswith("/ops/jobs/")
        root = await client.get("/ops/jobs/")
        assert root.status_code == 200
        assert 'href="./static/dashboard.css"' in root.text
        assert 'href="./jobs?queue=emails"' in root.text
        assert re.search(r'href="/', root.text) is None, "every link is relative"
        assert "Path=/ops/jobs/" in root.headers["set-cookie"]
        assert (await client.get("/ops/jobs/static/dashboard.js")).status_code == 200
        job = await client.get("/ops/jobs/job", params={"id": open_site.seeded.failed_id})
        assert job.status_code == 200 and 'href="./jobs?queue=emails"' in job.text


def test_it_refuses_to_bind_elsewhere_without_credentials() -> None:
    app = make_app(AppConfig(environ={}))
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(app, host)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        with pytest.raises(ConfigError, match="not a loopback address, without credentials"):
            check_bind(app, host)
    check_bind(make_app(AppConfig(environ={}, dashboard_token=TOKEN)), "0.0.0.0")
    done = subprocess.run(
        [sys.executable, "-m", "bullworker", "dashboard", "--host", "0.0.0.0", "--port", "0",
         "--app", "tests.integration.dashboard_app:make_default"],
        cwd=ROOT, env=bullworker_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("error: refusing to serve the dashboard on 0.0.0.0")


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        AppConfig(environ={"DASHBOARD_TOKEN": "short"})
    with pytest.raises(ConfigError, match="set both or neither"):
        AppConfig(environ={"DASHBOARD_USER": "ops"})
    config = AppConfig(environ={"DASHBOARD_TOKEN": TOKEN, "DASHBOARD_PASSWORD": "pw",
                                "DASHBOARD_USER": "ops"})  # fmt: skip
    assert TOKEN not in repr(config) and "'pw'" not in repr(config)
