"""Cron pattern validation, fire-time computation and schedule specs (no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypedDict

import pytest

from bullworker import AppConfig, BaseJob, ConfigError, JobDefinitionError, JobRegistry, worker_job
from bullworker.core.cron import next_fire_times
from bullworker.runtime.cron import CronSpec, cron_specs, matches, repeat_strategy


def declare(pattern: Any, tz: str | None = None, name: str = "Nightly") -> None:
    reg = JobRegistry()
    cls = type(
        name,
        (BaseJob,),
        {"CRON_SCHEDULE": pattern, "CRON_TZ": tz, "handle": lambda self, data: None},
    )
    reg.register(cls)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("61 * * * *", r"Nightly.CRON_SCHEDULE '61 \* \* \* \*' is invalid: .*out of range"),
        ("0 0 31 2 *", r"Nightly.CRON_SCHEDULE '0 0 31 2 \*' is invalid"),
        ("* * * * * * *", r"'\* \* \* \* \* \* \*' has 7 fields: it needs 5, or 6 with seconds"),
        ("@daily", r"'@daily' has 1 fields"),
        ("", r"'' has 0 fields"),
        ("H * * * *", r"uses H or R, which Node's cron-parser reads differently"),
        ("R 3 * * *", r"uses H or R"),
        (5, r"Nightly.CRON_SCHEDULE must be a string, got 5"),
    ],
)
def test_a_bad_pattern_names_the_class_and_the_pattern(pattern: Any, message: str) -> None:
    with pytest.raises(JobDefinitionError, match=message):
        declare(pattern)


def test_a_bad_timezone_names_the_class() -> None:
    with pytest.raises(JobDefinitionError, match=r"Nightly\.CRON_TZ 'Mars/Olympus' is not a known"):
        declare("0 3 * * *", tz="Mars/Olympus")
    declare("0 3 * * THU", tz="Europe/Stockholm")  # names of days are fine


def test_six_fields_mean_seconds_first() -> None:
    after = datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC)
    assert [t.second for t in next_fire_times("*/15 * * * * *", "UTC", 3, after=after)] == [
        15, 30, 45,
    ]  # fmt: skip
    assert [(t.minute, t.second) for t in next_fire_times("*/15 * * * *", "UTC", 2, after=after)] == [
        (15, 0), (30, 0),
    ]  # fmt: skip


# Expected values were printed by Node's cron-parser 5 (BullMQ 6.7.0) for Europe/Stockholm.
# croniter 2.0.7 with aware datetimes gets the first two wrong (08:30+02:00 and 09:30+02:00
# on the 29th: an hour early, then twice).
NODE_DST_CASES = [
    ("0 30 9 * * *", "2026-03-28T12:00:00Z", ["2026-03-29T07:30Z", "2026-03-30T07:30Z"]),
    ("0 30 9 * * *", "2026-10-24T12:00:00Z", ["2026-10-25T08:30Z", "2026-10-26T08:30Z"]),
    ("0 30 2 * * *", "2026-03-28T12:00:00Z", ["2026-03-29T01:30Z", "2026-03-30T00:30Z"]),
    ("0 30 2 * * *", "2026-10-24T12:00:00Z", ["2026-10-25T00:30Z", "2026-10-26T01:30Z"]),
    (
        "0 */20 * * * *",
        "2026-03-29T00:30:00Z",
        [f"2026-03-29T{t}Z" for t in ("00:40", "01:00", "01:20", "01:40", "02:00", "02:20")],
    ),
]


@pytest.mark.parametrize(("pattern", "after", "expected"), NODE_DST_CASES)
def test_fire_times_agree_with_node_across_dst(
    pattern: str, after: str, expected: list[str]
) -> None:
    start = datetime.fromisoformat(after)
    runs = next_fire_times(pattern, "Europe/Stockholm", len(expected), after=start)
    assert [t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ") for t in runs] == expected
    assert all(str(t.tzinfo) == "Europe/Stockholm" for t in runs)


def test_repeat_strategy_is_bullmqs_hook_without_the_dst_bug() -> None:
    millis = int(datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp() * 1000)
    opts = {"pattern": "0 30 9 * * *", "tz": "Europe/Stockholm"}
    assert repeat_strategy(millis, opts) == int(
        datetime(2026, 3, 29, 7, 30, tzinfo=UTC).timestamp() * 1000
    )
    assert repeat_strategy(millis, {"every": 1000}) is None  # bullmq handles `every` itself


class MailIn(TypedDict):
    to: str


def test_specs_use_class_settings_then_config() -> None:
    reg = JobRegistry()

    @worker_job(registry=reg)
    class Digest(BaseJob[MailIn, None]):
        QUEUE_NAME = "mail"
        CRON_SCHEDULE = "0 7 * * 1"
        CRON_DATA = {"to": "team@example.com"}  # noqa: RUF012
        JOB_OPTIONS = {"attempts": 2}  # noqa: RUF012

        async def handle(self, data: MailIn) -> None: ...

    @worker_job(registry=reg)
    class Cleanup(BaseJob[dict[str, Any], None]):
        CRON_SCHEDULE = "0 0 * * * *"
        CRON_TZ = "Asia/Tokyo"

        async def handle(self, data: dict[str, Any]) -> None: ...

    @worker_job(registry=reg)
    class Manual(BaseJob[dict[str, Any], None]):
        async def handle(self, data: dict[str, Any]) -> None: ...

    specs = cron_specs(reg, AppConfig(environ={"CRON_TZ": "Europe/Paris", "BULL_QUEUE": "main"}))
    assert specs == [
        CronSpec("Digest", "mail", "0 7 * * 1", "Europe/Paris", {"to": "team@example.com"}, {"attempts": 2}),
        CronSpec("Cleanup", "main", "0 0 * * * *", "Asia/Tokyo", {}, {}),
    ]  # fmt: skip
    assert specs[0].scheduler_id == "bw:cron:Digest"


def test_specs_reject_what_would_fail_every_run() -> None:
    with pytest.raises(ConfigError, match="CRON_TZ 'Nowhere/City' is not a known timezone"):
        cron_specs(JobRegistry(), AppConfig(environ={"CRON_TZ": "Nowhere/City"}))

    def one(**attrs: Any) -> JobRegistry:
        class Digest(BaseJob[MailIn, None]):
            async def handle(self, data: MailIn) -> None: ...

        for key, value in attrs.items():
            setattr(Digest, key, value)
        reg = JobRegistry()
        reg.register(Digest)
        return reg

    config = AppConfig(environ={})
    with pytest.raises(JobDefinitionError, match=r"Digest\.CRON_DATA does not fit the job: .*to"):
        cron_specs(one(CRON_SCHEDULE="0 7 * * *"), config)
    with pytest.raises(JobDefinitionError, match=r"Digest\.JOB_OPTIONS cannot set jobId"):
        cron_specs(
            one(CRON_SCHEDULE="0 7 * * *", CRON_DATA={"to": "x"}, JOB_OPTIONS={"jobId": "a"}),
            config,
        )
    with pytest.raises(JobDefinitionError, match=r"Digest\.JOB_OPTIONS: priority must be"):
        cron_specs(
            one(CRON_SCHEDULE="0 7 * * *", CRON_DATA={"to": "x"}, JOB_OPTIONS={"priority": -1}),
            config,
        )
    assert cron_specs(one(JOB_OPTIONS={"jobId": "a"}), config) == []  # not a cron job


def test_matches_compares_what_redis_stores() -> None:
    spec = CronSpec("Digest", "mail", "0 7 * * 1", "UTC", {"a": 1}, {"attempts": 2})
    record: dict[str, Any] = {
        "key": "bw:cron:Digest", "name": "Digest", "next": 1, "pattern": "0 7 * * 1", "tz": "UTC",
        "template": {"data": {"a": 1}, "opts": {"attempts": 2}},
    }  # fmt: skip
    assert matches(record, spec)
    assert not matches(None, spec)
    assert not matches({**record, "pattern": "0 8 * * 1"}, spec)
    assert not matches({**record, "tz": "Europe/Paris"}, spec)
    assert not matches({**record, "template": {"data": {"a": 1}}}, spec)
    plain = CronSpec("Digest", "mail", "0 7 * * 1", "UTC", {}, {})
    assert matches({**record, "template": None}, plain)  # BullMQ omits an empty template
