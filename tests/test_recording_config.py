"""RECORD_QUEUES: which queues a runner records, and where the setting shows (no servers)."""

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
