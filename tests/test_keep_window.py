"""The keep window's settings and the producer's refusal of removeOnComplete (no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from bullworker import (
    AppConfig,
    BaseJob,
    ConfigError,
    FlowJob,
    JobRegistry,
    PayloadError,
    create_app,
    worker_job,
)
from bullworker.core.keep import KeepWindow, keep_windows

reg = JobRegistry()


@worker_job(registry=reg)
class Mail(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "mail"

    async def handle(self, data: dict[str, Any]) -> None:
        return None


def test_the_default_window_keeps_1000_completed_and_5000_failed_for_an_hour() -> None:
    config = AppConfig(environ={})
    assert (config.keep_completed, config.keep_failed, config.keep_age) == (1000, 5000, "1h")
    default, windows = keep_windows(1000, 5000, "1h", None)
    assert default == KeepWindow(1000, 5000, 3600.0) == KeepWindow()
    assert windows == {}
    assert not default.at_once("completed") and not default.keeps_nothing


def test_a_zero_count_or_age_removes_at_once() -> None:
    assert KeepWindow(0, 5000, 3600.0).at_once("completed")
    assert not KeepWindow(0, 5000, 3600.0).at_once("failed")
    assert KeepWindow(10, 10, 0.0).keeps_nothing
    config = AppConfig(environ={"KEEP_COMPLETED": "0", "KEEP_FAILED": "0"})
    assert keep_windows(config.keep_completed, config.keep_failed, config.keep_age, None)[
        0
    ].keeps_nothing
    default, _ = keep_windows(1000, 5000, "0", None)
    assert default.age == 0.0 and default.keeps_nothing


def test_keep_age_none_or_empty_bounds_by_count_only() -> None:
    assert keep_windows(1000, 5000, "none", None)[0].age is None
    config = AppConfig(environ={"KEEP_AGE": ""})
    assert config.keep_age is None
    assert keep_windows(1000, 5000, "90m", None)[0].age == 5400.0


def test_queue_keep_sets_some_queues_windows() -> None:
    _, windows = keep_windows(1000, 5000, "1h", "emails=100/500/10m, audit=0,reports=//2h")
    assert windows["emails"] == KeepWindow(100, 500, 600.0)
    assert windows["audit"].keeps_nothing
    assert windows["reports"] == KeepWindow(1000, 5000, 7200.0)  # empty parts: the default
    assert keep_windows(1000, 5000, "1h", "x=5//")[1]["x"] == KeepWindow(5, 5000, 3600.0)


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"KEEP_COMPLETED": "-1"}, "KEEP_COMPLETED"),
        ({"KEEP_FAILED": "many"}, "KEEP_FAILED"),
        ({"KEEP_AGE": "soon"}, "KEEP_AGE: invalid duration 'soon'"),
        ({"QUEUE_KEEP": "emails"}, "is not queue=completed/failed/age"),
        ({"QUEUE_KEEP": "emails=1/2"}, "is not queue=completed/failed/age"),
        ({"QUEUE_KEEP": "emails=a/2/1h"}, "is not queue=completed/failed/age"),
        ({"QUEUE_KEEP": "bull:emails=1/2/1h"}, "is not queue=completed/failed/age"),
        ({"QUEUE_KEEP": "emails=1/2/3x"}, r"QUEUE_KEEP \(emails\)"),
        ({"QUEUE_KEEP": "emails=0,emails=1/1/1h"}, "given twice"),
    ],
)
def test_unreadable_windows_are_refused_clearly(environ: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        AppConfig(environ=environ)


def app(**settings: Any) -> Any:
    config = AppConfig(environ={}, app_env="test", **settings)
    return create_app(config=config, registry=reg)


@pytest.mark.parametrize("option", ["removeOnComplete", "removeOnFail"])
async def test_queue_job_refuses_removal_options_on_a_recorded_queue(option: str) -> None:
    service = app().worker_service
    for value in (True, 10, {"age": 60}):
        with pytest.raises(PayloadError, match=f"{option} would remove the job"):
            await service.queue_job(Mail, {}, **{option: value})
    with pytest.raises(PayloadError, match="queue mail is recorded"):
        await service.queue_jobs(Mail, [{}], **{option: True})
    with pytest.raises(PayloadError, match=option):
        await service.queue_flow(FlowJob(Mail, {}, **{option: True}))
    await service.queue_job(Mail, {}, **{option: False})  # false keeps the job: fine


async def test_removal_options_pass_where_nothing_records_them() -> None:
    await app(record_jobs=False).worker_service.queue_job(Mail, {}, removeOnComplete=True)
    service = app().worker_service  # a queue that is not the app's: a Node consumer's
    await service.queue_job_by_name(
        "NodeJob", {}, queue="node-only", force=True, removeOnComplete=True
    )
    with pytest.raises(PayloadError, match="removeOnComplete"):  # but RECORD_QUEUES records it
        await app(record_queues="node-only").worker_service.queue_job_by_name(
            "NodeJob", {}, queue="node-only", force=True, removeOnComplete=True
        )
