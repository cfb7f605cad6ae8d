"""Cancelling without servers: the request's wire format, how a cancelled job is read as a
row, the metric, what ``jobs cancel`` says. With servers: tests/integration/*cancel*.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bullworker.core import keys
from bullworker.core.errors import JobCancelled
from bullworker.core.hooks import JobRun
from bullworker.core.status import failed_status
from bullworker.history.hashes import to_record
from bullworker.ops.cancel import CancelOutcome, cancelled_record
from bullworker.runtime.cancel import CancelRequest, parse_request
from bullworker.runtime.context import JobContext
from bullworker.runtime.inline import InlineJob


def test_keys_and_channel_are_bullworkers_own() -> None:
    assert keys.cancel_channel("bull") == "bull:bw:cancel"
    assert keys.cancel_requests_key("bull", "mail") == "bull:bw:cancel:mail"
    assert keys.FINISHED_SETS == ("completed", "failed")  # BullMQ's sets: no "cancelled" one


def test_the_message_and_the_hash_field_read_back() -> None:
    request = CancelRequest("mail", "42", "no longer needed", 1_700_000_000_123, 1_700_000_001_000)
    assert json.loads(request.message()) == {
        "queue": "mail", "id": "42", "reason": "no longer needed", "timestamp": 1_700_000_000_123,
    }  # fmt: skip
    assert json.loads(request.field()) == {
        "reason": "no longer needed", "timestamp": 1_700_000_000_123, "at": 1_700_000_001_000,
    }  # fmt: skip
    assert parse_request(request.message()) == CancelRequest(
        "mail", "42", "no longer needed", 1_700_000_000_123
    )
    assert parse_request(request.field(), queue="mail", job_id="42") == request


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"queue": "q", "id": 7}', CancelRequest("q", "7", "cancelled")),  # Node: numbers
        ('{"queue": "q", "id": "7", "timestamp": "12"}', CancelRequest("q", "7", "cancelled", 12)),
        ('{"queue": "q", "id": "7", "reason": ""}', CancelRequest("q", "7", "cancelled")),
        ('{"queue": "q"}', None),
        ('{"id": "7"}', None),
        ('["q", "7"]', None),
        ("not json", None),
        (None, None),
    ],
)
def test_a_request_from_anyone_is_read_tolerantly(raw: Any, expected: CancelRequest | None) -> None:
    assert parse_request(raw) == expected


def _context(job_id: str = "42", timestamp: int = 1_700_000_000_123) -> JobContext:
    return JobContext(InlineJob(name="Job", id=job_id, data={}, timestamp=timestamp), "mail")


def test_a_request_applies_to_its_job_only() -> None:
    assert CancelRequest("mail", "42", "x").applies_to(_context())
    assert CancelRequest("mail", "42", "x", 1_700_000_000_123).applies_to(_context())
    assert not CancelRequest("mail", "42", "x", 1_699_999_999_999).applies_to(
        _context()
    )  # reused id
    assert not CancelRequest("other", "42", "x").applies_to(_context())
    assert not CancelRequest("mail", "43", "x").applies_to(_context())
    now = 1_700_000_000_000
    assert CancelRequest("mail", "42", "x", at=now - 3_601_000).expired(now)
    assert not CancelRequest("mail", "42", "x", at=now - 60_000).expired(now)
    assert not CancelRequest("mail", "42", "x").expired(now)


def _failed_hash(reason: str) -> dict[str, str]:
    return {
        "name": "Job", "data": "{}", "opts": '{"attempts": 3}', "timestamp": "1700000000000",
        "processedOn": "1700000000100", "finishedOn": "1700000000200", "atm": "1",
        "failedReason": reason, "stacktrace": '["Traceback ..."]',
    }  # fmt: skip


def test_a_job_failed_as_cancelled_is_a_cancelled_row() -> None:
    row = to_record("mail", "42", "failed", _failed_hash("JobCancelled: stop"))
    assert (row.status, row.reason, row.attempt) == ("cancelled", "JobCancelled: stop", 1)
    assert row.result == {"reason": "JobCancelled: stop", "stack": ["Traceback ..."]}
    other = to_record("mail", "43", "failed", _failed_hash("RuntimeError: JobCancelled: no"))
    assert other.status == "failed"
    assert failed_status(None) == "failed"


def test_the_row_of_a_job_cancelled_before_it_started() -> None:
    waiting = {
        "name": "Job",
        "data": '{"n": 1}',
        "opts": '{"delay": 5000}',
        "timestamp": "1700000000000",
    }
    row = cancelled_record("mail", "42", waiting, ["a line"], "not needed")
    assert (row.status, row.attempt, row.executed_at, row.logs) == (
        "cancelled",
        0,
        None,
        ["a line"],
    )
    assert row.result == {"reason": "JobCancelled: not needed", "stack": []}
    assert row.should_execute_at == datetime(2023, 11, 14, 22, 13, 25, tzinfo=UTC)
    assert row.completed_at > row.created_at


def test_the_metric_counts_a_cancelled_run_as_cancelled() -> None:
    pytest.importorskip("prometheus_client")
    from bullworker.observe.metrics import MetricsHook

    hook = MetricsHook()
    run = JobRun("mail", "Job", "1", 1, 3, 0, 0, {}, {})
    hook.job_finished(run, "failed", JobCancelled("stop"), 0.1, will_retry=False)
    hook.job_finished(run, "failed", RuntimeError("boom"), 0.1, will_retry=True)
    value = hook.registry.get_sample_value
    assert (
        value("bullworker_jobs_total", {"queue": "mail", "name": "Job", "outcome": "cancelled"})
        == 1
    )
    assert (
        value("bullworker_jobs_total", {"queue": "mail", "name": "Job", "outcome": "failed"}) == 1
    )


def test_what_jobs_cancel_says() -> None:
    removed = CancelOutcome("mail", "1", "Job", "delayed", "x", "removed", recorded=True)
    assert (
        removed.describe() == "mail:1 (Job) was delayed: removed from Redis, recorded as cancelled"
    )
    assert removed.cancelled and removed.to_dict()["reason"] == "JobCancelled: x"
    running = CancelOutcome(
        "mail", "2", "Job", "active", "x", "requested", listeners=2, waited=5.0, processed_by="h:9"
    )
    assert not running.cancelled
    assert running.describe().startswith(
        "mail:2 (Job) was running on h:9: cancel request sent to 2 runner(s); "
        "still running after 5 s"
    )
    ended = CancelOutcome(
        "mail", "2", "Job", "active", "x", "requested", listeners=1, ended="completed"
    )
    assert ended.describe().endswith("it ended completed before it could stop")
    assert not ended.cancelled
    alone = CancelOutcome("mail", "3", "Job", "active", "x", "requested", listeners=0)
    assert "cancel request left in Redis (no runner is listening now)" in alone.describe()
