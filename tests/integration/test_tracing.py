"""OpenTelemetry tracing across the queue, with the real SDK and an in-memory exporter."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bullworker import App, AppConfig, BaseJob, JobRegistry, create_app, worker_job
from bullworker.core.trace import job_trace_context
from bullworker.history.hashes import trace_id as recorded_trace_id
from bullworker.history.store import JobStore, open_store
from bullworker.observe.tracing import TraceIdFilter, TracingHook
from tests.helpers import REDIS_URL, bull_queue, bullworker_env, eventually, node_env, wait_finished

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
reg = JobRegistry()
log = logging.getLogger("tests.tracing")


def current_ids() -> dict[str, str]:
    ctx = trace.get_current_span().get_span_context()
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


@worker_job(registry=reg)
class TracedJob(BaseJob[dict[str, Any], dict[str, str]]):
    async def handle(self, data: dict[str, Any]) -> dict[str, str]:
        log.info("inside the handler")
        if data.get("fail"):
            raise RuntimeError("traced failure")
        return current_ids()


@worker_job(registry=reg)
class SyncTracedJob(BaseJob[dict[str, Any], dict[str, str]]):
    def handle(self, data: dict[str, Any]) -> dict[str, str]:
        return current_ids()  # in the runner's thread pool


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(TraceIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tracer_provider = TracerProvider()  # not the global one: each test has its own
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


@pytest.fixture
def collected() -> Iterator[Collect]:
    handler = Collect()
    loggers = [logging.getLogger("tests.tracing"), logging.getLogger("bullworker.runner")]
    for logger in loggers:
        logger.addHandler(handler)
    log.setLevel(logging.INFO)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def make_app(prefix: str, provider: TracerProvider, **settings: Any) -> App:
    settings.setdefault("record_jobs", False)
    settings.setdefault("redis_url", REDIS_URL)
    config = AppConfig(environ={}, bull_prefix=prefix, app_env="production", **settings)
    return create_app(
        config=config,
        enable_worker=True,
        registry=reg,
        hooks=[TracingHook(tracer_provider=provider)],
    )


@pytest.fixture
async def app(prefix: str, provider: TracerProvider) -> AsyncIterator[App]:
    application = make_app(prefix, provider)
    runner = application.create_runner()
    with provider.get_tracer("test").start_as_current_span("boot"):
        await runner.start()  # an ambient span here must not become the jobs' parent
    application.runner = runner
    yield application
    await application.stop()


async def run_node(script: str, spec: dict[str, Any], prefix: str, queue: str = "default") -> Any:
    """Run a tests/node script on the test Redis; its one line of JSON output."""
    result = await asyncio.to_thread(
        subprocess.run, ["node", script, json.dumps(spec)],
        cwd=NODE_DIR, env=node_env(prefix, queue), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def consumer_spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == f"default process {name}"]


def span_of(exporter: InMemorySpanExporter, name: str, job_id: str) -> ReadableSpan:
    [span] = [
        s
        for s in consumer_spans(exporter, name)
        if (s.attributes or {}).get("messaging.message.id") == job_id
    ]
    return span


async def test_a_job_queued_in_a_span_continues_its_trace(
    app: App, prefix: str, provider: TracerProvider, exporter: InMemorySpanExporter,
    collected: Collect,
) -> None:  # fmt: skip
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request") as parent:
        ok = await app.worker_service.queue_job(TracedJob, {})
        bad = await app.worker_service.queue_job(TracedJob, {"fail": True})
        [sync] = await app.worker_service.queue_jobs(SyncTracedJob, [{}])
    trace_id = f"{parent.get_span_context().trace_id:032x}"
    parent_id = f"{parent.get_span_context().span_id:016x}"
    async with bull_queue("default", prefix) as queue:
        done = await wait_finished(queue, ok)
        failed = await wait_finished(queue, bad)
        synced = await wait_finished(queue, sync)
    assert done.opts["traceparent"].startswith(f"00-{trace_id}-{parent_id}-")  # then the flags
    # The same context for a Node worker with BullMQ telemetry (opts.telemetry.metadata).
    assert json.loads(done.opts["tm"]) == {"traceparent": done.opts["traceparent"]}
    assert done.returnvalue["trace_id"] == trace_id
    assert synced.returnvalue["trace_id"] == trace_id
    assert failed.failedReason == "RuntimeError: traced failure"

    span = span_of(exporter, "TracedJob", ok)
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert f"{span.context.span_id:016x}" == done.returnvalue["span_id"]  # the handler's span
    assert dict(span.attributes or {}) == {
        "messaging.system": "bullmq",
        "messaging.operation": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": ok,
        "bullmq.job.name": "TracedJob",
        "bullmq.job.attempt": 1,
        "bullmq.job.attempts": 1,
    }
    assert span.status.status_code is StatusCode.UNSET
    error_span = span_of(exporter, "TracedJob", bad)
    assert error_span.status.status_code is StatusCode.ERROR
    assert error_span.status.description == "RuntimeError: traced failure"
    assert [e.name for e in error_span.events] == ["exception"]
    assert error_span.context.trace_id == parent.get_span_context().trace_id

    # Logs of the handler and the runner's failure warning carry the trace id.
    inside = [r for r in collected.records if r.getMessage() == "inside the handler"]
    assert [getattr(r, "trace_id", None) for r in inside] == [trace_id, trace_id]
    [warning] = [r for r in collected.records if "traced failure" in r.getMessage()]
    assert getattr(warning, "trace_id", None) == trace_id
    assert getattr(warning, "span_id", None) == f"{error_span.context.span_id:016x}"


async def test_without_a_span_there_is_no_traceparent_and_a_new_trace(
    app: App, prefix: str, exporter: InMemorySpanExporter, collected: Collect
) -> None:
    job_id = await app.worker_service.queue_job(TracedJob, {})
    async with bull_queue("default", prefix) as queue:
        job = await wait_finished(queue, job_id)
    assert "traceparent" not in job.opts and "tm" not in job.opts
    [span] = consumer_spans(exporter, "TracedJob")
    assert span.parent is None  # not the "boot" span the runner started in
    assert f"{span.context.trace_id:032x}" == job.returnvalue["trace_id"]
    log.info("outside any span")
    assert getattr(collected.records[-1], "trace_id", None) == "-"


async def test_tracing_false_never_touches_job_options(
    prefix: str, provider: TracerProvider
) -> None:
    config = AppConfig(environ={}, redis_url=REDIS_URL, bull_prefix=prefix, app_env="test")
    traced, untraced = (
        create_app(config=config, registry=reg, tracing=True),
        create_app(config=config, registry=reg, tracing=False),
    )
    assert traced.tracing and any(isinstance(h, TracingHook) for h in traced.hooks)
    assert not untraced.tracing and untraced.hooks == []
    with provider.get_tracer("test").start_as_current_span("request") as parent:
        await traced.worker_service.queue_job(TracedJob, {})
        await untraced.worker_service.queue_job(TracedJob, {}, traceparent=None)
        own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await traced.worker_service.queue_job(TracedJob, {}, traceparent=own)
    [kept] = [q.opts for q in traced.worker_service.queued[:1]]
    assert kept["traceparent"].split("-")[1] == f"{parent.get_span_context().trace_id:032x}"
    assert untraced.worker_service.queued[0].opts == {}
    assert traced.worker_service.queued[1].opts["traceparent"] == own  # the caller's wins
    assert json.loads(traced.worker_service.queued[1].opts["tm"]) == {"traceparent": own}


async def test_the_jobs_row_has_the_trace_id(
    prefix: str, provider: TracerProvider, tmp_path: Path
) -> None:
    sqlite_path = str(tmp_path / "jobs.sqlite3")
    app = make_app(prefix, provider, record_jobs=True, sqlite_path=sqlite_path,
                   recorder_sweep_interval=0.5)  # fmt: skip
    runner = app.create_runner()
    await runner.start()
    store = open_store(None, sqlite_path=sqlite_path)
    try:
        with provider.get_tracer("test").start_as_current_span("request") as parent:
            job_id = await app.worker_service.queue_job(TracedJob, {})
        trace_id = f"{parent.get_span_context().trace_id:032x}"
        await store.open()

        async def recorded() -> bool:
            return bool(await store.get(f"default:{job_id}"))

        await eventually(recorded, timeout=15)
        [row] = await store.get(f"default:{job_id}")
        assert row.trace_id == trace_id
        assert row.result == {"trace_id": trace_id, "span_id": row.result["span_id"]}
    finally:
        await store.close()
        await runner.stop(grace=1)
        await app.stop()


@pytest.mark.node
async def test_a_node_producers_traceparent_is_the_handlers_parent(
    app: App, prefix: str, exporter: InMemorySpanExporter
) -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    spec = {
        "name": "TracedJob",
        "data": {"from": "node"},
        "opts": {"traceparent": f"00-{trace_id}-{span_id}-01", "tracestate": "vendor=opaque"},
    }
    added = await run_node("trace_produce.mjs", spec, prefix)
    assert added["opts"]["traceparent"] == spec["opts"]["traceparent"]
    async with bull_queue("default", prefix) as queue:
        job = await wait_finished(queue, str(added["id"]))
    assert job.returnvalue["trace_id"] == trace_id
    [span] = consumer_spans(exporter, "TracedJob")
    assert span.parent is not None and span.parent.is_remote
    assert (f"{span.parent.trace_id:032x}", f"{span.parent.span_id:016x}") == (trace_id, span_id)
    assert span.context.trace_state.get("vendor") == "opaque"
    assert span.attributes is not None and span.attributes["messaging.message.id"] == added["id"]


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
BOTH = {"traceparent": TRACEPARENT, "tracestate": "v=1"}
ONLY = {"traceparent": TRACEPARENT}


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        (BOTH, BOTH),
        # BullMQ telemetry: "tm" as Redis holds it, telemetry.metadata as Node reads it.
        ({"tm": json.dumps(BOTH)}, BOTH),
        ({"telemetry": {"metadata": json.dumps(BOTH)}}, BOTH),
        ({"tm": ONLY}, ONLY),
        ({"telemetry": {"metadata": ONLY}}, ONLY),
        ({"tm": json.dumps({**ONLY, "baggage": "k=v"})}, ONLY),
        # A traceparent option wins, without the other carrier's tracestate.
        ({"traceparent": OTHER, "tm": json.dumps(BOTH)}, {"traceparent": OTHER}),
        ({"traceparent": "not-w3c", "tm": json.dumps(BOTH)}, BOTH),
        ({"tm": "{not json"}, {}),
        ({"tm": json.dumps([TRACEPARENT])}, {}),
        ({"tm": json.dumps({"traceparent": "00-abc"})}, {}),
        ({"telemetry": json.dumps(BOTH)}, {}),
        ({"telemetry": {"omitContext": True}}, {}),
        ({}, {}),
        (None, {}),
    ],
)
def test_the_trace_context_of_job_options(opts: Any, expected: dict[str, str]) -> None:
    assert job_trace_context(opts) == expected
    trace_id = expected["traceparent"].split("-")[1] if expected else None
    assert recorded_trace_id(opts) == trace_id  # the _jobs.traceId column


async def wait_recorded(
    store: JobStore, exporter: InMemorySpanExporter, job_ids: list[str]
) -> dict[str, Any]:
    """The _jobs rows of the default queue's ``job_ids``, once their spans have ended too."""
    rows: dict[str, Any] = {}

    async def recorded() -> bool:
        for job_id in job_ids:
            rows[job_id] = await store.get(f"default:{job_id}")
        spans = consumer_spans(exporter, "TracedJob")
        ended = {(s.attributes or {}).get("messaging.message.id") for s in spans}
        return all(rows.values()) and ended >= set(job_ids)

    await eventually(recorded, timeout=15)
    return {job_id: found[-1] for job_id, found in rows.items()}


@pytest.mark.node
async def test_a_node_producer_with_bullmq_telemetry_is_the_handlers_parent(
    prefix: str, provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    sqlite_path = str(tmp_path / "jobs.sqlite3")
    app = make_app(prefix, provider, record_jobs=True, sqlite_path=sqlite_path,
                   recorder_sweep_interval=0.5)  # fmt: skip
    runner = app.create_runner()
    await runner.start()
    store = open_store(None, sqlite_path=sqlite_path)
    try:
        jobs = [{"name": "TracedJob"}, {"name": "TracedJob", "opts": {"traceparent": OTHER}}]
        spec = {"jobs": jobs}
        produced = await run_node("otel_produce.mjs", spec, prefix)
        request = produced["request"]
        plain, explicit = produced["jobs"]
        [add] = [
            s
            for s in produced["spans"]
            if s["kind"] == "PRODUCER" and s["attributes"]["bullmq.job.id"] == plain["id"]
        ]
        assert (add["name"], add["traceId"], add["parentSpanId"]) == (
            "add default.TracedJob", request["traceId"], request["spanId"]
        )  # fmt: skip
        # The wire: Redis holds the propagation headers as a JSON string under "tm",
        # which Node reads back as opts.telemetry.metadata.
        headers = {"traceparent": f"00-{add['traceId']}-{add['spanId']}-01"}
        assert json.loads(plain["rawOpts"]["tm"]) == headers
        assert plain["opts"]["telemetry"] == {"metadata": plain["rawOpts"]["tm"]}
        assert "traceparent" not in plain["rawOpts"]

        await store.open()
        rows = await wait_recorded(store, exporter, [plain["id"], explicit["id"]])
        # The handler's span continues Node's "add" span, in Node's trace.
        span = span_of(exporter, "TracedJob", plain["id"])
        assert span.parent is not None and span.parent.is_remote
        assert (f"{span.parent.trace_id:032x}", f"{span.parent.span_id:016x}") == (
            request["traceId"], add["spanId"]
        )  # fmt: skip
        assert rows[plain["id"]].result["trace_id"] == request["traceId"]
        assert rows[plain["id"]].trace_id == request["traceId"]
        # A traceparent option beside the telemetry context wins, here and in _jobs.
        other_trace, other_span = OTHER.split("-")[1:3]
        span = span_of(exporter, "TracedJob", explicit["id"])
        assert span.parent is not None
        assert (f"{span.parent.trace_id:032x}", f"{span.parent.span_id:016x}") == (
            other_trace, other_span
        )  # fmt: skip
        assert rows[explicit["id"]].trace_id == other_trace
    finally:
        await store.close()
        await runner.stop(grace=1)
        await app.stop()


@pytest.mark.node
async def test_a_node_worker_with_bullmq_telemetry_continues_a_python_trace(
    prefix: str, provider: TracerProvider
) -> None:
    config = AppConfig(environ={}, redis_url=REDIS_URL, bull_prefix=prefix,
                       app_env="production", record_jobs=False)  # fmt: skip
    producer = create_app(config=config, registry=reg)
    try:
        with provider.get_tracer("test").start_as_current_span("request") as parent:
            job_id = await producer.worker_service.queue_job(TracedJob, {"to": "node"})
    finally:
        await producer.stop()
    trace_id = f"{parent.get_span_context().trace_id:032x}"
    span_id = f"{parent.get_span_context().span_id:016x}"

    consumed = await run_node("otel_consume.mjs", {"count": 1}, prefix)
    assert consumed["failed"] == []
    [job] = consumed["jobs"]
    assert job["id"] == job_id
    metadata = job["opts"]["telemetry"]["metadata"]  # what bullmq-otel parses
    assert json.loads(metadata) == {"traceparent": job["opts"]["traceparent"]}
    [process] = [s for s in consumed["spans"] if s["kind"] == "CONSUMER"]
    assert process["name"] == "process default"
    assert process["attributes"]["bullmq.job.id"] == job_id
    assert (process["traceId"], process["parentSpanId"]) == (trace_id, span_id)
    assert job["active"] == {"traceId": trace_id, "spanId": process["spanId"]}


def cli_app() -> App:
    """The app ``bullworker start`` runs in the logging test below; config from the environment."""
    return create_app(config=AppConfig(), enable_worker=True, registry=reg)


async def test_bullworker_start_logs_carry_the_trace_id(
    prefix: str, provider: TracerProvider
) -> None:
    env = bullworker_env(BULL_PREFIX=prefix, APP_ENV="production", RECORD_JOBS="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bullworker", "start", "--app", f"{__name__}:cli_app"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    config = AppConfig(environ={}, redis_url=REDIS_URL, bull_prefix=prefix, app_env="production")
    producer = create_app(config=config, registry=reg)
    try:
        with provider.get_tracer("test").start_as_current_span("request") as parent:
            job_id = await producer.worker_service.queue_job(TracedJob, {"fail": True})
        trace_id = f"{parent.get_span_context().trace_id:032x}"
        async with bull_queue("default", prefix) as queue:
            job = await wait_finished(queue, job_id, timeout=15)
        assert job.failedReason == "RuntimeError: traced failure"
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=15)
    finally:
        await producer.stop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    lines = stderr.splitlines()
    # "<date> <time> LEVEL [trace=<trace id>] logger: message"
    assert any(
        re.search(rf" \w+ \[trace={trace_id}\] bullworker\.runner: .*traced failure", line)
        for line in lines
    ), stderr
    assert any(f"[trace={trace_id}] tests.tracing: inside the handler" in line for line in lines)
    [started] = [line for line in lines if "runner started" in line]
    assert " INFO [trace=-] bullworker.runner: " in started, started
