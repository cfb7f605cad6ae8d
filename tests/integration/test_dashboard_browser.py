"""The dashboard in a real browser: Debian's Chromium, headless, driven by selenium.

The binary and its driver are given by path (/usr/bin/chromium, /usr/bin/chromedriver:
scripts/system-deps installs them), so Selenium Manager never runs and nothing is
downloaded. Without them the test is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bullworker.dashboard import dashboard_app
from bullworker.history.store import open_store
from bullworker.ops.retry import retry_job_id
from tests.helpers import app_config
from tests.integration.dashboard_app import Seeded, Served, browser, browser_missing, make_app, seed

TOKEN = "browser-test-token-" + uuid.uuid4().hex


@pytest.fixture
def chromium(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    missing = browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests must run in CI: {missing}")
        pytest.skip(missing)
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def no_download(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Selenium Manager ran: it would download a browser or a driver")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_download)
    driver = browser()
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.timeout(180)
def test_a_user_finds_a_failure_and_retries_it(chromium: Any, prefix: str, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    config = app_config(
        bull_prefix=prefix, sqlite_path=str(tmp_path / "jobs.sqlite3"), app_env="production",
        dashboard_token=TOKEN,
    )  # fmt: skip

    async def seeding() -> tuple[Seeded, Any]:
        async with open_store(None, sqlite_path=config.sqlite_path) as store:
            seeded = await seed(make_app(config), store)
            return seeded, (await store.get(seeded.failed_id))[0]

    seeded, failed_row = asyncio.run(seeding())
    driver = chromium
    with Served(dashboard_app(make_app(config))) as served:
        # Signing in with the token.
        driver.get(served.url)
        assert "Sign in" in driver.title or driver.find_element("name", "token")
        driver.find_element("name", "token").send_keys(TOKEN)
        driver.find_element("css selector", "form.login button").click()

        # The overview: every queue with its counts, the charts.
        assert driver.find_element("css selector", 'tr[data-queue="emails"]')
        images = driver.find_element("css selector", 'tr[data-queue="images"]').text
        assert "paused" in images
        assert len(driver.find_elements("css selector", "#charts svg.chart")) == 2

        # A filtered list: the failed SendEmail jobs.
        driver.find_element("link text", "Jobs").click()
        Select(driver.find_element("name", "state")).select_by_value("failed")
        driver.find_element("name", "name").send_keys("SendEmail")
        driver.find_element("css selector", "form.filters button").click()
        assert "state=failed" in driver.current_url and "name=SendEmail" in driver.current_url
        states = driver.find_elements("css selector", "#history td .state")
        assert states and {s.text for s in states} == {"failed"}
        ids = [a.text for a in driver.find_elements("css selector", "#history td.id a")]
        assert seeded.failed_id in ids and all(i.startswith("emails:") for i in ids)

        # The failed job's page: its reason and stack trace.
        driver.find_element("link text", seeded.failed_id).click()
        reason = driver.find_element("id", "reason")
        assert reason.is_displayed()
        assert reason.text == "ConnectionError: SMTP server refused the connection"
        stack = driver.find_element("css selector", "pre.stack")
        assert stack.is_displayed() and "Traceback (most recent call last)" in stack.text
        shown = driver.find_element("css selector", "dl.facts time")  # the script's local time
        assert "ago" in (shown.get_attribute("title") or "")

        # Retry, confirm: the job is queued again.
        driver.find_element("css selector", 'button[data-action="retry"]').click()
        assert f"Retry the failed job {seeded.failed_id}" in driver.find_element("id", "what").text
        driver.find_element("id", "confirm").click()
        new = driver.find_element("css selector", "a.new-job")
        expected = f"emails:{retry_job_id(failed_row)}"
        assert new.text == expected
        new.click()
        assert "s-waiting" in driver.page_source and "Retry of" in driver.page_source
        assert seeded.failed_id in driver.find_element("css selector", "dl.facts").text

    async def state() -> Any:
        service = make_app(config).worker_service
        try:
            return await service.job_state("emails", expected.split(":")[1])
        finally:
            await service.close()

    assert asyncio.run(state()) == "waiting"


def test_the_escaped_payload_stays_text_in_the_browser(
    chromium: Any, prefix: str, tmp_path: Path
) -> None:
    config = app_config(
        bull_prefix=prefix, sqlite_path=str(tmp_path / "j.sqlite3"), app_env="production"
    )

    async def seeding() -> Seeded:
        async with open_store(None, sqlite_path=config.sqlite_path) as store:
            return await seed(make_app(config), store, rows=10)

    seeded = asyncio.run(seeding())
    with Served(dashboard_app(make_app(config))) as served:
        chromium.get(served.url + f"job?id={seeded.script_id}")
        data = chromium.find_element("css selector", "pre.data").text
        assert "<script>alert('xss')</script>" in data  # shown as text, not run
        logs = chromium.get_log("browser") if hasattr(chromium, "get_log") else []
        assert not [entry for entry in logs if "xss" in str(entry)]
        assert (
            chromium.execute_script("return document.querySelectorAll('main script').length") == 0
        )
