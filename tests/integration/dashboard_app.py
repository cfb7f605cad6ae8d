"""The dashboard's test app and its data: tests/integration/test_dashboard*.py and
scripts/screenshots use it.

`seed` fills Redis and ``_jobs`` the way a running service would leave them:
jobs waiting and delayed in Redis, a paused queue, a failure not recorded yet
(a real one, run by a runner, with its stack), and a day of recorded history
(completed, failed with stacks and log lines, cancelled) for the lists, the
charts and the failure groups. One failed payload holds ``<script>``, which
every page must show as text.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from bullworker import App, AppConfig, BaseJob, JobContext, JobRegistry, create_app, worker_job
from bullworker.core import keys
from bullworker.history.store import JobRecord, JobStore
from bullworker.ops.queues import set_paused
from bullworker.transport.probe import reachable_client

registry = JobRegistry()

SCRIPT = "<script>alert('xss')</script>"
STACK = (
    "Traceback (most recent call last):\n"
    '  File "shop/mail.py", line 41, in handle\n'
    "    await smtp.send(message)\n"
    "ConnectionError: SMTP server refused the connection"
)


class EmailIn(TypedDict):
    to: str


@worker_job(registry=registry)
class SendEmail(BaseJob[EmailIn, str]):
    QUEUE_NAME = "emails"

    async def handle(self, data: EmailIn, job: JobContext) -> str:
        await job.log(f"sending to {data['to']}")
        await job.progress({"step": "smtp"})
        if data["to"].endswith(".invalid"):
            raise ConnectionError(f"SMTP server refused {data['to']}")
        return f"sent to {data['to']}"


@worker_job(registry=registry)
class ResizeImage(BaseJob[dict[str, Any], int]):
    QUEUE_NAME = "images"

    async def handle(self, data: dict[str, Any]) -> int:
        return int(data.get("width", 0))


@worker_job(registry=registry)
class NightlyReport(BaseJob[dict[str, Any], None]):
    CRON_SCHEDULE = "0 3 * * *"

    async def handle(self, data: dict[str, Any]) -> None:
        return None


def make_app(config: AppConfig) -> App:
    return create_app(config=config, enable_worker=True, registry=registry)


def make_default() -> App:
    """The app from the environment (``--app tests.integration.dashboard_app:make_default``)."""
    return make_app(AppConfig())


@dataclass
class Seeded:
    """What `seed` made, for the tests to look for."""

    failed_id: str  # a recorded failure, with its stack and log lines
    script_id: str  # a recorded failure whose payload holds <script>
    redis_failed_id: str  # a failure still in Redis (not recorded)
    waiting_ids: list[str]
    delayed_id: str
    history_rows: int


def _row(
    queue: str, job_id: str, name: str, status: str, finished: datetime, **extra: Any
) -> JobRecord:
    started = finished - timedelta(milliseconds=40)
    result: Any = {"ok": True}
    if status != "completed":
        reason = extra.pop("reason", "ConnectionError: SMTP server refused the connection")
        result = {"reason": reason, "stack": [STACK] if status == "failed" else []}
    fields: dict[str, Any] = {
        "queue": queue, "queue_id": job_id, "attempt": 1, "name": name,
        "data": {"to": f"user{job_id}@example.com"}, "status": status, "result": result,
        "created_at": started - timedelta(milliseconds=5),
        "should_execute_at": started - timedelta(milliseconds=5), "executed_at": started,
        "completed_at": finished,
    }  # fmt: skip
    fields.update(extra)
    return JobRecord(**fields)


def history(now: datetime, count: int) -> list[JobRecord]:
    """``count`` rows over the last day, more in the last hour; about one in four fails."""
    rows = []
    reasons = (
        "ConnectionError: SMTP server refused the connection",
        "TimeoutError: upstream took longer than 30 s",
        "ValueError: width must be positive",
    )
    for n in range(count):
        recent = n % 3 == 0
        ago = timedelta(minutes=(n * 7) % 60) if recent else timedelta(minutes=(n * 37) % 1440)
        queue, name = ("emails", "SendEmail") if n % 2 else ("images", "ResizeImage")
        status = "failed" if n % 8 in (3, 6) else "cancelled" if n % 41 == 5 else "completed"
        extra: dict[str, Any] = {}
        if status != "completed":
            extra["reason"] = reasons[n % 3] if status == "failed" else "JobCancelled: by user"
        rows.append(_row(queue, f"h{n}", name, status, now - ago - timedelta(seconds=n), **extra))
    return rows


async def seed(app: App, store: JobStore, *, rows: int = 240) -> Seeded:
    """Fill Redis and ``_jobs`` (see the module's doc). The app's runner must not run."""
    now = datetime.now(UTC)
    failed = _row(
        "emails", "901", "SendEmail", "failed", now - timedelta(minutes=3),
        logs=["sending to ada@example.invalid", "smtp: 554 refused"], progress={"step": "smtp"},
        data={"to": "ada@example.invalid"},
    )  # fmt: skip
    script = _row(
        "emails", "902", "SendEmail", "failed", now - timedelta(minutes=2),
        data={"to": SCRIPT}, reason=f"ValueError: bad address {SCRIPT}",
    )  # fmt: skip
    await store.insert_records([failed, script, *history(now, rows)])
    redis_failed = await _real_failure(app, store)
    service = app.worker_service
    waiting = [
        str(await service.queue_job(SendEmail, {"to": f"w{i}@example.com"})) for i in range(3)
    ]
    delayed = str(await service.queue_job(ResizeImage, {"width": 640}, delay=3_600_000))
    await service.queue_job(ResizeImage, {"width": 320})
    await set_paused(app, "images", True)
    await service.close()
    # Two finished jobs of emails that left Redis unrecorded, counted as the recorder counts them.
    client = await reachable_client(app.config.redis_settings("bull"))
    try:
        lost = keys.lost_key(app.config.bull_prefix, "emails")
        await client.hincrby(lost, "completed", 1)
        await client.hincrby(lost, "failed", 1)
    finally:
        await client.aclose()
    return Seeded(
        failed_id=failed.id, script_id=script.id, redis_failed_id=f"emails:{redis_failed}",
        waiting_ids=[f"emails:{i}" for i in waiting], delayed_id=f"images:{delayed}",
        history_rows=rows + 2,
    )  # fmt: skip


async def _real_failure(app: App, store: JobStore) -> str:
    """Run one failing job with a runner that does not record (so it stays in Redis)."""
    config = AppConfig(
        environ={}, **{**{n: getattr(app.config, n) for n in AppConfig.settings()},
                       "record_jobs": False, "app_env": "production"},
    )  # fmt: skip
    runner_app = make_app(config)
    runner = runner_app.create_runner()
    await runner.start()
    try:
        job_id = str(
            await runner_app.worker_service.queue_job(SendEmail, {"to": "grace@example.invalid"})
        )
        deadline = time.monotonic() + 15
        client = runner_app.worker_service
        while await client.job_state("emails", job_id) != "failed":
            if time.monotonic() > deadline:
                raise AssertionError("the seeded failure did not fail")
            await asyncio.sleep(0.05)
    finally:
        await runner.stop(grace=1)
        await runner_app.stop()
    return job_id


# --------------------------------------------------------------------------- browser, server

#: Debian's Chromium and its driver (scripts/system-deps installs both); nothing is downloaded.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    import os
    import shutil

    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (scripts/system-deps installs chromium and chromium-driver)"
    if shutil.which("chromedriver") is None and not os.path.exists(CHROMEDRIVER):
        return "no chromedriver"
    try:
        import selenium  # noqa: F401
    except ModuleNotFoundError:
        return "selenium is not installed (it is in the dev extra)"
    return None


def browser(width: int = 1280, height: int = 900) -> Any:
    """Headless Chromium driven by selenium, with the system's binary and driver given
    explicitly, so that Selenium Manager never runs (it would download a browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        f"--window-size={width},{height}", "--force-device-scale-factor=1", "--lang=en-US",
    ):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread of its own (its own loop)."""

    def __init__(self, asgi: Any) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(asgi, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
