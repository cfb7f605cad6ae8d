"""Recording settings (no servers): RECORD_QUEUES, which queues a runner records and where
the setting shows, and JOBS_LOG_LINES."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from bullworker import AppConfig, ConfigError, create_app
from bullworker.cli import cli
from bullworker.history.recording import recorded_queues
from bullworker.ops.inspect import app_queues


def test_record_queues_setting_is_a_list_of_queue_names() -> None:
    assert AppConfig(environ={}).record_only_queues == []
    config = AppConfig(environ={"RECORD_QUEUES": " mail, reports,,mail "})
    assert config.record_only_queues == ["mail", "reports"]
    with pytest.raises(ConfigError, match="RECORD_QUEUES"):
        AppConfig(environ={"RECORD_QUEUES": "mail,bull:mail"})


def test_jobs_log_lines_is_a_count_of_zero_or_more() -> None:
    assert AppConfig(environ={}).jobs_log_lines == 100
    assert AppConfig(environ={"JOBS_LOG_LINES": "0"}).jobs_log_lines == 0
    for bad in ("-1", "ten", "2.5"):
        with pytest.raises(ConfigError, match="JOBS_LOG_LINES"):
            AppConfig(environ={"JOBS_LOG_LINES": bad})
    for value in (-5, 2.5, True):
        with pytest.raises(ConfigError, match="JOBS_LOG_LINES"):
            AppConfig(environ={}, jobs_log_lines=value)


def test_recorded_queues_are_the_consumed_ones_then_record_queues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = AppConfig(environ={}, record_queues="node-b,a,node-c")
    assert recorded_queues(config, ["a", "b"]) == ["a", "b", "node-b", "node-c"]
    assert recorded_queues(config, []) == ["node-b", "a", "node-c"]
    off = AppConfig(environ={}, record_queues="node-b", record_jobs=False)
    with caplog.at_level(logging.WARNING, logger="bullworker.recording"):
        assert recorded_queues(off, ["a"]) == []
    assert "RECORD_JOBS=false" in caplog.text


def test_start_refuses_a_bad_record_queues_option() -> None:
    result = CliRunner().invoke(
        cli,
        ["start", "--app", "tests.integration.recorder_app:app", "--record-queues", "ok,bad:name"],
    )
    assert result.exit_code == 2, result.output
    assert "--record-queues" in result.output and "bad:name" in result.output


def test_stats_and_doctor_cover_record_only_queues() -> None:
    config = AppConfig(environ={}, record_queues="node-only", worker_queues="mine")
    assert app_queues(create_app(config=config)) == ["mine", "node-only"]
