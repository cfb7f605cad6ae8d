"""bullworker.asgi: the app inside a Starlette/FastAPI lifespan, over the real ASGI protocol."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bullworker import App, BaseJob, JobRegistry, create_app, worker_job
from bullworker.asgi import get_bullworker_app, get_worker_service, lifespan
from tests.helpers import REDIS_URL, app_config, bull_queue, eventually, wait_finished

with warnings.catch_warnings():  # Starlette now prefers the httpx2 fork; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

reg = JobRegistry()


class Notes:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.lock = threading.Lock()


@worker_job(registry=reg)
class NoteJob(BaseJob[dict[str, str], str]):
    def __init__(self, notes: Notes) -> None:
        self.notes = notes

    async def handle(self, data: dict[str, str]) -> str:
        with self.notes.lock:
            self.notes.items.append((data["text"], threading.current_thread().name))
        return data["text"].upper()


broken = JobRegistry()


class Missing:
    """Not provided to the app: a job needing it cannot be built."""


@worker_job(registry=broken)
class NeedsMissing(BaseJob[dict[str, Any], None]):
    def __init__(self, missing: Missing) -> None:
        self.missing = missing

    async def handle(self, data: dict[str, Any]) -> None:
        return None


def make_app(prefix: str, app_env: str) -> App:
    config = app_config(bull_prefix=prefix, app_env=app_env, record_jobs=False)
    return create_app(config=config, enable_worker=True, registry=reg, providers=[Notes])


def web_app(bullworker_app: App) -> Starlette:
    async def queue_note(request: Request) -> JSONResponse:
        job_id = await get_worker_service(request).queue_job(NoteJob, await request.json())
        return JSONResponse({"job_id": job_id}, status_code=202)

    async def status(request: Request) -> JSONResponse:
        runner = get_bullworker_app(request).runner
        return JSONResponse({"runner": runner is not None and runner.running})

    return Starlette(
        routes=[Route("/notes", queue_note, methods=["POST"]), Route("/status", status)],
        lifespan=lifespan(bullworker_app),
    )


def test_development_runs_the_runner_in_the_web_process(prefix: str) -> None:
    bullworker_app = make_app(prefix, "development")
    notes = bullworker_app.resolve(Notes)
    api = web_app(bullworker_app)
    with TestClient(api) as client:  # sends lifespan.startup, then lifespan.shutdown
        assert api.state.worker_service is bullworker_app.worker_service
        assert client.get("/status").json() == {"runner": True}
        response = client.post("/notes", json={"text": "from the endpoint"})
        assert response.status_code == 202
        job_id = response.json()["job_id"]
        deadline = time.monotonic() + 10
        while not notes.items and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [text for text, _ in notes.items] == ["from the endpoint"]
        runner = bullworker_app.runner
        assert runner is not None
    assert bullworker_app.runner is None and not runner.running  # stopped at shutdown
    assert job_id.isdigit()


@asynccontextmanager
async def lifespan_protocol(asgi_app: Any) -> AsyncIterator[list[dict[str, Any]]]:
    """Drive the ASGI lifespan protocol by hand, as a server does."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []
    got = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        got.set()

    async def next_message() -> dict[str, Any]:
        await asyncio.wait_for(got.wait(), 30)
        got.clear()
        return sent[-1]

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.create_task(asgi_app(scope, to_app.get, send))
    await to_app.put({"type": "lifespan.startup"})
    started = await next_message()
    try:
        yield sent
    finally:
        if started["type"] == "lifespan.startup.complete":
            await to_app.put({"type": "lifespan.shutdown"})
            assert (await next_message())["type"] == "lifespan.shutdown.complete"
            await asyncio.wait_for(task, 30)
        else:  # Starlette re-raises the startup error after reporting it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)


async def test_production_queues_but_does_not_run(prefix: str) -> None:
    bullworker_app = make_app(prefix, "production")
    api = web_app(bullworker_app)
    async with lifespan_protocol(api) as sent:
        assert [m["type"] for m in sent] == ["lifespan.startup.complete"]
        assert bullworker_app.runner is None
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            assert (await client.get("/status")).json() == {"runner": False}
            response = await client.post("/notes", json={"text": "later"})
        assert response.status_code == 202
        async with bull_queue("default", prefix) as queue:
            job_id = response.json()["job_id"]
            await asyncio.sleep(0.3)
            assert await queue.getJobState(job_id) == "waiting"
    assert bullworker_app.worker_service._queues == {}  # closed at shutdown

    # A runner elsewhere (here: started by hand) runs what the web app queued.
    runner = bullworker_app.create_runner()
    await runner.start()
    try:
        async with bull_queue("default", prefix) as queue:
            assert (await wait_finished(queue, job_id)).returnvalue == "LATER"
    finally:
        await runner.stop(grace=1)
        await bullworker_app.stop()


async def test_a_runner_that_cannot_start_fails_the_startup(prefix: str) -> None:
    config = app_config(bull_prefix=prefix, app_env="development", record_jobs=False)
    bullworker_app = create_app(config=config, enable_worker=True, registry=broken)
    api = Starlette(lifespan=lifespan(bullworker_app))
    async with lifespan_protocol(api) as sent:
        [failed] = sent
        assert failed["type"] == "lifespan.startup.failed"
        assert (
            "cannot build job(s): missing dependency of NeedsMissing: parameter 'missing' needs "
            "Missing, which is not provided; provide it with create_app(providers=[...]) or "
            "app.provide(Missing, instance)"
        ) in failed["message"]
    assert bullworker_app.runner is None


async def test_the_fastapi_example_queues_a_job_that_runs(prefix: str) -> None:
    from examples import fastapi_app

    config = fastapi_app.app.config  # read from the environment when the example was imported
    config.bull_prefix, config.app_env, config.record_jobs = prefix, "development", False
    config.redis_url = REDIS_URL
    async with lifespan_protocol(fastapi_app.api):
        assert fastapi_app.app.runner is not None
        transport = httpx.ASGITransport(app=fastapi_app.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            response = await client.post("/greetings", json={"name": "Ada"})
            invalid = await client.post("/greetings", json={"nom": "Ada"})
        assert response.status_code == 202, response.text
        assert invalid.status_code == 422
        async with bull_queue("default", prefix) as queue:
            job = await wait_finished(queue, response.json()["job_id"])
        assert job.returnvalue == "Hello, Ada!"

    async def stopped() -> bool:
        return fastapi_app.app.runner is None

    await eventually(stopped)
