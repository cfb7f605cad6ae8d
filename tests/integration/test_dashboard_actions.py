"""The dashboard's actions, each a confirmation page and then the CLI's own library call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bullworker.ops.retry import retry_job_id
from bullworker.transport.connection import close_queue, open_queue
from tests.integration.dashboard_support import TOKEN, Site, csrf_of, settings_for, site


@pytest.fixture(params=["sqlite", "postgres"])
async def acting(request: Any, prefix: str, tmp_path: Path, pg_dsn: str) -> AsyncIterator[Site]:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    settings = settings_for(request.param, prefix, str(tmp_path), pg_dsn, schema)
    async with site({**settings, "dashboard_token": TOKEN}) as found:
        yield found


async def _act(client: httpx.AsyncClient, page: str, **form: str) -> tuple[str, str]:
    """POST the action twice, as a user does: the confirmation page, then its form."""
    csrf = csrf_of((await client.get(page)).text)
    asked = await client.post("/action", data={**form, "csrf": csrf})
    assert asked.status_code == 200, asked.text
    assert 'name="confirm" value="yes"' in asked.text or "nothing to retry" in asked.text
    done = await client.post("/action", data={**form, "csrf": csrf, "confirm": "yes"})
    return asked.text, done.text


async def test_retry_one_then_all_matching(acting: Site) -> None:
    s, service = acting.seeded, acting.app.worker_service
    async with acting.client(authorization=f"Bearer {TOKEN}") as client:
        page = await client.get("/job", params={"id": s.failed_id})
        assert 'name="do" value="retry"' in page.text
        asked, done = await _act(client, f"/job?id={s.failed_id}", do="retry", id=s.failed_id)
        assert f"Retry the failed job {s.failed_id}" in asked
        [row] = await acting.store.get(s.failed_id)
        new_id = retry_job_id(row)
        assert "queued as <a" in done and f"emails:{new_id}" in done
        assert await service.job_state("emails", new_id) == "waiting"
        _, again = await _act(client, f"/job?id={s.failed_id}", do="retry", id=s.failed_id)
        assert "retried before as" in again  # once per failure, as `bullworker retry`

        # Every failure of SendEmail whose reason says "upstream took", in the last day.
        form = {"do": "retry-all", "name": "SendEmail", "since": "1d", "text": "UPSTREAM took"}
        asked, done = await _act(client, "/jobs?state=failed", **form)
        expected = {
            r.id for r in await acting.store.recent(status="failed", name="SendEmail", limit=999)
            if "upstream took" in (r.reason or "")
        }  # fmt: skip
        assert expected
        for job_id in expected:
            assert job_id in asked and job_id in done
        assert done.count("queued as") == len(expected)

        refused = await client.post(
            "/action",
            data={"do": "retry-all", "csrf": csrf_of(page.text), "confirm": "yes"},
        )
        assert refused.status_code == 400 and "choose the failed jobs" in refused.text


async def test_promote_remove_cancel_pause(prefix: str, tmp_path: Path, pg_dsn: str) -> None:
    settings = settings_for("sqlite", prefix, str(tmp_path), pg_dsn, None)
    async with site({**settings, "dashboard_token": TOKEN}) as found:
        s, service = found.seeded, found.app.worker_service
        async with found.client(authorization=f"Bearer {TOKEN}") as client:
            job_page = f"/job?id={s.delayed_id}"
            assert 'value="promote"' in (await client.get(job_page)).text
            _, done = await _act(client, job_page, do="promote", id=s.delayed_id)
            assert "promoted, it waits to start now" in done
            assert await service.job_state("images", s.delayed_id.split(":")[1]) == "waiting"

            first, second = s.waiting_ids[0], s.waiting_ids[1]
            _, done = await _act(client, f"/job?id={first}", do="remove", id=first)
            assert "removed from Redis without running" in done
            assert await service.job_state("emails", first.split(":")[1]) is None

            _, done = await _act(client, f"/job?id={second}", do="cancel", id=second)
            assert "recorded as cancelled" in done
            [row] = await found.store.get(second)
            assert row.status == "cancelled" and row.reason == (
                "JobCancelled: cancelled from the dashboard"
            )

            _, done = await _act(client, "/", do="resume", queue="images")
            assert "queue images resumed" in done
            _, done = await _act(client, "/", do="pause", queue="emails")
            assert "queue emails paused" in done
            queue = open_queue(found.app.config, "emails")
            try:
                assert await queue.isPaused()
            finally:
                await close_queue(queue, 5)
            overview = await client.get("/")
            assert 'value="resume"' in overview.text and 'value="pause"' in overview.text

            bad = await _act(client, "/", do="promote", id=first)
            assert "is not in Redis" in bad[1] or "no job" in bad[1]
