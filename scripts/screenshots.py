"""The README's dashboard screenshots, from seeded data, in headless Chromium.

    scripts/screenshots

The data is that of the dashboard's tests (tests/integration/dashboard_app.py:
`seed`), under a throwaway key prefix of the test Redis and in a temporary
SQLite file, both deleted afterwards. The dashboard is served on a free
loopback port with a token, signed in through its own sign-in page, and shot
at 1280 pixels wide: the queues overview and a failed job's page.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bullworker.dashboard import dashboard_app  # noqa: E402
from bullworker.history.store import open_store  # noqa: E402
from tests.helpers import app_config  # noqa: E402
from tests.integration import dashboard_app as support  # noqa: E402

OUT = ROOT / "docs" / "images"
TOKEN = "screenshot-token-" + uuid.uuid4().hex


async def _seed(config: object) -> support.Seeded:
    app = support.make_app(config)  # type: ignore[arg-type]
    async with open_store(None, sqlite_path=app.config.sqlite_path) as store:
        return await support.seed(app, store, rows=900)


async def _clean(prefix: str) -> None:
    import redis.asyncio as aioredis

    from tests.helpers import REDIS_URL

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        found = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if found:
            await client.delete(*found)
    finally:
        await client.aclose()


def main() -> int:
    missing = support.browser_missing()
    if missing:
        print(f"scripts/screenshots: {missing}", file=sys.stderr)
        return 2
    prefix = f"bwshots-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        config = app_config(
            bull_prefix=prefix, sqlite_path=f"{tmp}/jobs.sqlite3", dashboard_token=TOKEN,
            app_env="production",
        )  # fmt: skip
        try:
            seeded = asyncio.run(_seed(config))
            app = support.make_app(config)
            with support.Served(dashboard_app(app)) as served:
                driver = support.browser(1280, 900)
                try:
                    driver.get(served.url + "login")
                    driver.find_element("name", "token").send_keys(TOKEN)
                    driver.find_element("css selector", "form.login button").click()
                    driver.get(served.url)
                    OUT.mkdir(parents=True, exist_ok=True)
                    _shoot(driver, OUT / "dashboard-queues.png")
                    driver.get(served.url + f"job?id={seeded.failed_id}")
                    _shoot(driver, OUT / "dashboard-job.png")
                finally:
                    driver.quit()
        finally:
            asyncio.run(_clean(prefix))
    print(f"wrote {OUT / 'dashboard-queues.png'} and {OUT / 'dashboard-job.png'}")
    return 0


def _shoot(driver: Any, path: Path) -> None:
    """The whole page at 1280 CSS pixels wide, as tall as its content (at most 1600)."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1280, "height": min(max(height, 600), 1600), "deviceScaleFactor": 1,
               "mobile": False}  # fmt: skip
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


if __name__ == "__main__":
    sys.exit(main())
