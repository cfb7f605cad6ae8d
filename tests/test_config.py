"""AppConfig: environment parsing, overrides, scoped Redis settings, secrets."""

from __future__ import annotations

import pytest

from bullworker import AppConfig, ConfigError
from bullworker.connection import bullmq_connection
from bullworker.redaction import redact_url


def test_defaults_without_environment() -> None:
    config = AppConfig(environ={})
    assert config.app_env == "development"
    assert config.bull_prefix == "bull"
    assert config.bull_queue == "default"
    assert config.runner_enabled is True
    assert config.cron_tz == "UTC"
    assert config.shutdown_grace < 30


def test_environment_is_parsed_by_type() -> None:
    config = AppConfig(
        environ={
            "APP_ENV": "production",
            "ENABLE_JOB_RUNNER": "true",
            "REDIS_PORT": "6380",
            "WORKER_CONCURRENCY": "4",
            "SHUTDOWN_GRACE": "2.5",
            "BULL_QUEUE": "mail",
        }
    )
    assert config.app_env == "production"
    assert config.enable_job_runner is True
    assert config.redis_port == 6380
    assert config.worker_concurrency == 4
    assert config.shutdown_grace == 2.5
    assert config.bull_queue == "mail"


def test_keyword_overrides_win_over_environment() -> None:
    config = AppConfig(environ={"BULL_QUEUE": "from-env"}, bull_queue="from-code")
    assert config.bull_queue == "from-code"


def test_runner_defaults_per_environment() -> None:
    assert AppConfig(environ={"APP_ENV": "production"}).runner_enabled is False
    assert AppConfig(environ={"APP_ENV": "test"}).runner_enabled is False
    assert (
        AppConfig(environ={"APP_ENV": "development", "ENABLE_JOB_RUNNER": "false"}).runner_enabled
        is False
    )
    assert (
        AppConfig(environ={"APP_ENV": "production", "ENABLE_JOB_RUNNER": "1"}).runner_enabled
        is True
    )


def test_subclass_adds_its_own_settings() -> None:
    class MyConfig(AppConfig):
        mail_from: str = "noreply@example.com"
        batch_size: int = 10

    config = MyConfig(environ={"BATCH_SIZE": "25"})
    assert config.batch_size == 25
    assert config.mail_from == "noreply@example.com"
    assert "batch_size" in MyConfig.settings()


def test_bad_values_give_clear_errors_without_secrets() -> None:
    with pytest.raises(ConfigError, match="REDIS_PORT='abc' is not a valid int"):
        AppConfig(environ={"REDIS_PORT": "abc"})
    with pytest.raises(ConfigError, match="ENABLE_JOB_RUNNER"):
        AppConfig(environ={"ENABLE_JOB_RUNNER": "maybe"})
    with pytest.raises(ConfigError, match="WORKER_CONCURRENCY"):
        AppConfig(environ={"WORKER_CONCURRENCY": "0"})
    with pytest.raises(ConfigError, match="unknown setting"):
        AppConfig(environ={}, no_such_setting=1)


def test_scoped_redis_keys_override_one_by_one() -> None:
    config = AppConfig(
        environ={
            "REDIS_HOST": "global",
            "REDIS_PORT": "6379",
            "REDIS_PASSWORD": "pw",
            "BULL_REDIS_HOST": "queues",
        }
    )
    settings = config.redis_settings("bull")
    assert (settings.host, settings.port, settings.password) == ("queues", 6379, "pw")


def test_scoped_host_beats_global_sentinel() -> None:
    config = AppConfig(environ={"REDIS_SENTINEL_HOST": "sentinel", "BULL_REDIS_HOST": "queues"})
    settings = config.redis_settings("bull")
    assert settings.sentinel_host is None
    assert settings.host == "queues"
    assert config.redis_settings(None).sentinel_host == "sentinel"


def test_repr_and_describe_hide_secrets() -> None:
    config = AppConfig(
        environ={
            "REDIS_PASSWORD": "hunter2",
            "DATABASE_URL": "postgresql://u:s3cret@db/app",
            "BULL_REDIS_URL": "redis://:topsecret@cache:6379/2",
        }
    )
    text = repr(config)
    for secret in ("hunter2", "s3cret", "topsecret"):
        assert secret not in text
    assert "topsecret" not in config.redis_settings("bull").describe()
    assert redact_url("redis://user:pw@host:1/0") == "redis://user:***@host:1/0"


def test_connection_kwargs_disable_socket_timeout() -> None:
    opts = bullmq_connection(
        AppConfig(environ={"REDIS_URL": "rediss://u:p@h:6390/3"}).redis_settings()
    )
    assert opts["socket_timeout"] is None
    assert (opts["host"], opts["port"], opts["db"], opts["ssl"]) == ("h", 6390, 3, True)
    assert (opts["username"], opts["password"]) == ("u", "p")
    with pytest.raises(ConfigError, match="Redis URL"):
        bullmq_connection(AppConfig(environ={"REDIS_URL": "http://x"}).redis_settings())
