"""The log set-up (bullworker.observe.logs) and what the start line says of a store."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from bullworker import AppConfig
from bullworker.config.redaction import url_location
from bullworker.core.errors import ConfigError
from bullworker.history.store import open_store
from bullworker.observe.logs import (
    DefaultHandler,
    JobFieldsFilter,
    JsonFormatter,
    configure_logging,
    default_logging,
)
from bullworker.runtime.context import JobContext, _current
from bullworker.runtime.inline import InlineJob


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db.internal:5433/jobs", "app@db.internal:5433/jobs"),
        ("postgresql://app:p@ss@word@db/jobs?sslmode=require", "app@db:5432/jobs"),
        ("postgresql://db/jobs?password=s3cret", "db:5432/jobs"),
        ("postgresql://u:pw@[::1]/x", "u@[::1]:5432/x"),
        ("postgresql:///jobs?host=/run/postgresql&password=s3cret", None),
    ],
)
def test_url_location_hides_the_password(url: str, shown: str | None) -> None:
    found = url_location(url, default_port=5432)
    assert "s3cret" not in found and "ss@word" not in found
    if shown is not None:
        assert found == shown


@pytest.mark.parametrize(
    ("url", "sqlite_path", "schema", "described"),
    [
        (None, "bullworker.sqlite3", None, "SQLite ./bullworker.sqlite3"),
        (None, "/var/lib/jobs.sqlite3", None, "SQLite /var/lib/jobs.sqlite3"),
        (None, "./data/jobs.sqlite3", None, "SQLite ./data/jobs.sqlite3"),
        ("sqlite:///:memory:", "x", None, "SQLite in memory"),
        ("postgresql://app:pw@db:5432/main", "x", None, "PostgreSQL app@db:5432/main"),
        ("postgres://app:pw@db/main", "x", "jobs", "PostgreSQL app@db:5432/main (schema jobs)"),
    ],
)
def test_a_store_describes_where_its_rows_go(
    url: str | None, sqlite_path: str, schema: str | None, described: str
) -> None:
    assert open_store(url, sqlite_path=sqlite_path, pg_schema=schema).describe() == described


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL='verbose' is not a log level"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' is neither text nor json"),
    ],
)
def test_log_settings_are_checked(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AppConfig(environ=env)


def test_log_settings_accept_any_case() -> None:
    config = AppConfig(environ={"LOG_LEVEL": "warning", "LOG_FORMAT": "JSON"})
    assert (config.log_level, config.log_format) == ("warning", "JSON")
    assert (AppConfig(environ={}).log_level, AppConfig(environ={}).log_format) == ("INFO", "text")


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("tests.logs", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_basic_fields_and_no_empty_ones() -> None:
    entry = json.loads(JsonFormatter().format(record("hello %s", "world")))
    assert set(entry) == {"time", "level", "logger", "message"}
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "WARNING", "tests.logs", "hello world"
    )  # fmt: skip
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_a_json_line_has_the_fields_of_the_running_job_and_the_trace() -> None:
    token = _current.set(JobContext(InlineJob("SendEmail", "42", {}), "mail"))
    try:
        made = record(trace_id="0af7651916cd43dd8448eb211c80319c")
        JobFieldsFilter().filter(made)
    finally:
        _current.reset(token)
    entry = json.loads(JsonFormatter().format(made))
    assert entry["queue"] == "mail" and entry["job_name"] == "SendEmail"
    assert entry["job_id"] == "42" and entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    outside = record(trace_id="-")
    JobFieldsFilter().filter(outside)
    assert set(json.loads(JsonFormatter().format(outside))) == {
        "time",
        "level",
        "logger",
        "message",
    }


def test_fields_given_with_extra_win_over_the_running_job() -> None:
    token = _current.set(JobContext(InlineJob("SendEmail", "42", {}), "mail"))
    try:
        made = record(job_id="7")
        JobFieldsFilter().filter(made)
    finally:
        _current.reset(token)
    assert json.loads(JsonFormatter().format(made))["job_id"] == "7"


def test_a_json_line_carries_the_traceback() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        made = record()
        made.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(made))
    assert "ValueError: bad value" in entry["exception"]
    assert "\n" not in JsonFormatter().format(made)


@contextlib.contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without handlers (pytest's own, added for each test, put back after)."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield root
    finally:
        root.handlers, root.level = saved, level


def test_default_logging_sets_up_a_program_without_logging() -> None:
    with bare_root() as root:
        assert default_logging("warning", "json", trace_ids=False)
        [handler] = root.handlers
        assert isinstance(handler, DefaultHandler) and isinstance(handler.formatter, JsonFormatter)
        assert root.level == logging.WARNING
        # Once more (another app, or the CLI after loading the app): replaced, not added.
        assert default_logging("debug", "text", trace_ids=False)
        [again] = root.handlers
        assert again is not handler and root.level == logging.DEBUG
        stream = io.StringIO()
        again.setStream(stream)  # type: ignore[attr-defined]
        logging.getLogger("tests.logs").debug("visible")
        assert stream.getvalue().endswith(" DEBUG tests.logs: visible\n")


def test_default_logging_leaves_configured_logging_alone() -> None:
    with bare_root() as root:
        mine = logging.StreamHandler(io.StringIO())
        root.addHandler(mine)
        root.setLevel(logging.ERROR)
        assert not default_logging("debug", "json")
        assert root.handlers == [mine] and root.level == logging.ERROR


def test_a_handler_on_the_bullworker_logger_counts_as_configured() -> None:
    with bare_root() as root:
        ours = logging.getLogger("bullworker")
        mine = logging.NullHandler()
        ours.addHandler(mine)
        try:
            assert not default_logging()
            assert root.handlers == []
        finally:
            ours.removeHandler(mine)


def test_configure_logging_refuses_unknown_values() -> None:
    with bare_root() as root:
        with pytest.raises(ConfigError, match="log level 'LOUD'"):
            configure_logging("loud")
        with pytest.raises(ConfigError, match="log format 'xml'"):
            configure_logging("INFO", "xml")
        assert root.handlers == []


def test_json_lines_name_the_trace_in_a_span() -> None:
    with bare_root() as root:
        pytest.importorskip("opentelemetry.sdk")
        from opentelemetry.sdk.trace import TracerProvider

        configure_logging("INFO", "json", trace_ids=True)
        [handler] = root.handlers
        stream = io.StringIO()
        handler.setStream(stream)  # type: ignore[attr-defined]
        tracer = TracerProvider().get_tracer("tests")
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("tests.logs").info("in a span")
        logging.getLogger("tests.logs").info("outside")
        inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
        assert inside["trace_id"] == f"{span.get_span_context().trace_id:032x}"
        assert "trace_id" not in outside


@pytest.mark.parametrize(
    ("roles", "said"),
    [
        ({"default": "leader", "other": "leader"}, "leader"),
        ({"default": "follower"}, "follower: another process records"),
        ({"default": "pending"}, "leader election pending"),
        (
            {"a": "leader", "b": "follower", "c": "leader", "d": "pending"},
            "leader of a, c; follower of b; election pending for d",
        ),
    ],
)
def test_the_start_line_says_the_recording_role_of_each_queue(
    roles: dict[str, str], said: str
) -> None:
    from bullworker.runtime.runner import _roles

    assert _roles(roles) == said
