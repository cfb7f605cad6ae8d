"""The dashboard over HTTP (in-process): every page, filter and page of a list, on SQLite and
PostgreSQL, with the data a running service leaves (tests/integration/dashboard_app.py).

Who may see and act, CSRF and escaping: test_dashboard_security.py; the actions:
test_dashboard_actions.py; a real browser: test_dashboard_browser.py.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dashboard_app import SCRIPT
from tests.integration.dashboard_support import Site, ids_in, settings_for, site


@pytest.fixture(params=["sqlite", "postgres"])
async def seeded(request: Any, prefix: str, tmp_path: Path, pg_dsn: str) -> AsyncIterator[Site]:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    async with site(settings_for(request.param, prefix, str(tmp_path), pg_dsn, schema)) as found:
        yield found


async def test_every_page_answers(seeded: Site) -> None:
    s = seeded.seeded
    async with seeded.client() as client:
        overview = await client.get("/")
        assert overview.status_code == 200
        text = overview.text
        for queue in ("emails", "images", "default"):
            assert f'data-queue="{queue}"' in text
        assert "paused" in text  # images is paused
        assert 'title="left Redis unrecorded: see bullworker doctor">2</span>' in text  # emails
        assert text.count('<svg class="chart"') >= 2 + 3  # two charts and a sparkline per queue
        assert "last hour" in text and "failure rate" in text
        day = await client.get("/", params={"window": "day"})
        assert day.status_code == 200 and "per hour" in day.text

        listed = await client.get("/jobs")
        assert listed.status_code == 200
        assert set(s.waiting_ids) <= set(ids_in(listed.text, "live"))
        assert s.redis_failed_id in ids_in(listed.text, "live")
        assert s.failed_id in ids_in(listed.text, "history")

        page = await client.get("/job", params={"id": s.failed_id})
        assert page.status_code == 200
        assert "ConnectionError: SMTP server refused the connection" in page.text
        assert "Traceback (most recent call last)" in page.text
        assert "smtp: 554 refused" in page.text  # a log line
        assert "&#34;step&#34;: &#34;smtp&#34;" in page.text  # the progress, escaped JSON

        live = await client.get("/job", params={"id": s.redis_failed_id})
        assert live.status_code == 200
        assert "not recorded yet" in live.text and "Processed by" in live.text
        assert "SMTP server refused grace@example.invalid" in live.text

        waiting = await client.get("/job", params={"id": s.waiting_ids[0]})
        assert waiting.status_code == 200 and "s-waiting" in waiting.text

        schedules = await client.get("/schedules")
        assert schedules.status_code == 200
        assert "NightlyReport" in schedules.text and "0 3 * * *" in schedules.text

        failures = await client.get("/failures")
        assert failures.status_code == 200
        assert "ConnectionError: SMTP server refused the connection" in failures.text
        assert "ValueError: width must be positive" in failures.text
        assert "JobCancelled" not in failures.text  # cancels are not failures

        missing = await client.get("/job", params={"id": "emails:nope"})
        assert missing.status_code == 404 and "no job emails:nope" in missing.text


async def test_filters(seeded: Site) -> None:
    s = seeded.seeded
    async with seeded.client() as client:

        async def listed(section: str = "history", **params: str) -> list[str]:
            answer = await client.get("/jobs", params={"limit": "500", **params})
            assert answer.status_code == 200, answer.text
            return ids_in(answer.text, section)

        failed = await listed(state="failed")
        assert s.failed_id in failed and s.script_id in failed
        states = await seeded.store.recent(status="failed", limit=1000)
        assert set(failed) == {r.id for r in states}
        assert await listed("live", state="failed") == [s.redis_failed_id]

        cancelled = await listed(state="cancelled")
        assert cancelled and all(i.startswith(("emails:h", "images:h")) for i in cancelled)

        emails = await listed(queue="emails", state="completed")
        assert emails and all(i.startswith("emails:") for i in emails)
        named = await listed(name="ResizeImage")
        assert named and all(i.startswith("images:") for i in named)

        timeouts = await listed(text="upstream TOOK")  # case-insensitive substring
        rows = [r for r in states if "upstream took" in (r.reason or "")]
        assert set(timeouts) == {r.id for r in rows} and timeouts
        assert await listed(text="no such reason at all") == []

        recent = await listed(since="10m")
        assert s.failed_id in recent and len(recent) < s.history_rows
        older = await listed(until="10m")
        assert s.failed_id not in older and not set(recent) & set(older)

        assert set(await listed("live", state="waiting")) == set(s.waiting_ids) | {"images:2"}
        assert await listed("live", state="delayed", queue="images") == [s.delayed_id]
        assert "history" not in (await client.get("/jobs", params={"state": "waiting"})).text

        bad = await client.get("/jobs", params={"since": "yesterday-ish"})
        assert bad.status_code == 400 and "invalid time" in bad.text
        assert (await client.get("/jobs", params={"state": "nope"})).status_code == 400


async def test_pages_of_a_list(seeded: Site) -> None:
    async with seeded.client() as client:
        seen: list[str] = []
        params: dict[str, str] = {"state": "completed", "limit": "7"}
        for _ in range(100):
            answer = await client.get("/jobs", params=params)
            assert answer.status_code == 200
            found = ids_in(answer.text, "history")
            assert 0 < len(found) <= 7
            seen += found
            if 'rel="next"' not in answer.text.split('id="history"')[1]:
                break
            cursor = html.unescape(answer.text.split('id="history"')[1]).split("cursor=")[1]
            params["cursor"] = cursor.split('"')[0].replace("%7E", "~").replace("%3A", ":")
        expected = await seeded.store.count(status="completed")
        assert len(seen) == len(set(seen)) == expected

        first = await client.get("/jobs", params={"state": "waiting", "limit": "2"})
        page_one = ids_in(first.text, "live")
        assert len(page_one) == 2 and "offset=2" in first.text
        second = await client.get("/jobs", params={"state": "waiting", "limit": "2", "offset": "2"})
        page_two = ids_in(second.text, "live")
        assert page_two and not set(page_one) & set(page_two)


async def test_job_data_is_shown_as_text(seeded: Site) -> None:
    s = seeded.seeded
    escaped = html.escape(SCRIPT, quote=True)
    async with seeded.client() as client:
        for path, params in (
            ("/job", {"id": s.script_id}),
            ("/jobs", {"state": "failed"}),
            ("/failures", {}),
            ("/jobs", {"text": SCRIPT}),
            ("/jobs", {"name": SCRIPT}),
        ):
            answer = await client.get(path, params=params)
            assert answer.status_code == 200
            assert SCRIPT not in answer.text, path
            assert "&lt;script&gt;" in answer.text or escaped in answer.text, path


async def test_a_text_search_goes_down_in_windows(
    seeded: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small windows (3 rows, then 12, 48...): the pages are those of a plain scan."""
    from datetime import UTC, datetime, timedelta

    from bullworker.history.store import views

    monkeypatch.setattr(views, "TEXT_WINDOW", 3)
    everything = await seeded.store.recent(limit=10_000)
    now = datetime.now(UTC)
    for text, filters in (
        ("upstream", {}),
        ("refused", {"status": "failed"}),
        ("by user", {}),
        ("e", {"queue": "emails", "since": now - timedelta(hours=6)}),
        ("e", {"until": now - timedelta(minutes=20)}),
        ("nothing like it", {}),
    ):
        expected = [
            r.id for r in everything
            if r.status != "completed" and text in (r.reason or "").lower()
            and all(
                getattr(r, key) == value for key, value in filters.items()
                if key in ("queue", "status")
            )
            and ("since" not in filters or r.completed_at >= filters["since"])
            and ("until" not in filters or r.completed_at < filters["until"])
        ]  # fmt: skip
        got: list[str] = []
        before = None
        for _ in range(100):
            page = await views.list_jobs(
                seeded.store, views.ListFilters(text=text, before=before, **filters), 4
            )
            got += [row.id for row in page]
            if len(page) < 4:
                break
            before = (page[-1].completed_at, page[-1].id)
        assert got == expected, (text, filters)
