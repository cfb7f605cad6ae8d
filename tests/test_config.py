"""AppConfig: environment parsing, overrides, scoped Redis settings, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bullworker import AppConfig, ConfigError
from bullworker.config.redaction import redact_url
from bullworker.ops.doctor import connection_check
from bullworker.transport.connection import bullmq_connection, close_queue, open_queue, redis_client
from bullworker.transport.tls import TLSConnection
from tests.faults.servers import make_client_cert, make_tls_certs


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


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate and a client certificate, as PEM files."""
    folder = tmp_path_factory.mktemp("pem")
    ca, server_cert, server_key = make_tls_certs(folder)
    cert, key = make_client_cert(folder)
    names = ("ca", "cert", "key", "server_cert", "server_key")
    files = (ca, cert, key, server_cert, server_key)
    return {name: str(path) for name, path in zip(names, files, strict=True)}


async def test_tls_files_are_scoped_one_by_one(pem: dict[str, str]) -> None:
    config = AppConfig(
        environ={
            "REDIS_TLS": "true",
            "REDIS_TLS_CA_FILE": pem["ca"],
            "BULL_REDIS_TLS_CERT_FILE": pem["cert"],
            "BULL_REDIS_TLS_KEY_FILE": pem["key"],
        }
    )
    queues, other = config.redis_settings("bull"), config.redis_settings(None)
    assert (queues.tls_ca_file, queues.tls_cert_file, queues.tls_key_file) == (
        pem["ca"], pem["cert"], pem["key"],
    )  # fmt: skip
    assert (other.tls_ca_file, other.tls_cert_file, other.tls_key_file) == (pem["ca"], None, None)
    opts = bullmq_connection(queues)
    assert opts["ssl"] is True
    assert (opts["ssl_ca_certs"], opts["ssl_certfile"], opts["ssl_keyfile"]) == (
        pem["ca"], pem["cert"], pem["key"],
    )  # fmt: skip
    client = redis_client(queues)
    assert client.connection_pool.connection_kwargs["ssl_certfile"] == pem["cert"]
    await client.aclose()


def test_tls_files_reach_sentinel_managed_connections(pem: dict[str, str]) -> None:
    config = AppConfig(
        environ={
            "REDIS_SENTINEL_HOST": "127.0.0.1",
            "REDIS_TLS": "1",
            "REDIS_TLS_CERT_FILE": pem["cert"],
            "REDIS_TLS_KEY_FILE": pem["key"],
        }
    )
    pool = bullmq_connection(config.redis_settings())["connection_pool"]
    connection = pool.make_connection()
    assert type(connection).__name__ == "_SentinelSSLConnection"
    assert isinstance(connection, TLSConnection)
    assert (connection.certfile, connection.keyfile) == (pem["cert"], pem["key"])


async def test_tls_clients_open_connections_that_hear_late_refusals(pem: dict[str, str]) -> None:
    config = AppConfig(environ={"REDIS_TLS": "true", "REDIS_TLS_CA_FILE": pem["ca"]})
    queue = open_queue(config, "q")
    client = redis_client(config.redis_settings())
    try:
        assert queue.client.connection_pool.connection_class is TLSConnection
        assert client.connection_pool.connection_class is TLSConnection
    finally:
        await close_queue(queue, 1.0)
        await client.aclose()


def test_rediss_url_query_gives_the_client_certificate(pem: dict[str, str]) -> None:
    url = (
        f"rediss://h:6390/0?ssl_cert_reqs=required&ssl_certfile={pem['cert']}"
        f"&ssl_keyfile={pem['key']}&ssl_ca_certs={pem['server_cert']}"
    )
    config = AppConfig(environ={"REDIS_URL": url, "REDIS_TLS_CA_FILE": pem["ca"]})
    opts = bullmq_connection(config.redis_settings())
    assert (opts["ssl_certfile"], opts["ssl_keyfile"]) == (pem["cert"], pem["key"])
    assert opts["ssl_ca_certs"] == pem["server_cert"]  # the URL wins, key by key
    assert opts["ssl_cert_reqs"] == "required"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"REDIS_TLS_CERT_FILE": "cert"},
            "REDIS_TLS_CERT_FILE is set but REDIS_TLS_KEY_FILE is not: a client certificate "
            "needs its private key, and the key its certificate",
        ),
        (
            {"BULL_REDIS_TLS_KEY_FILE": "key"},
            "BULL_REDIS_TLS_KEY_FILE is set but REDIS_TLS_CERT_FILE is not",
        ),
        (
            {"REDIS_URL": "rediss://h/0?ssl_certfile=cert"},
            "ssl_certfile of the Redis URL is set but ssl_keyfile of the Redis URL "
            "(or REDIS_TLS_KEY_FILE) is not",
        ),
    ],
)
def test_a_certificate_needs_its_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AppConfig(environ={"REDIS_TLS": "true", **environ})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_tls_files_must_load(pem: dict[str, str], tmp_path: Path) -> None:
    absent = str(tmp_path / "absent.key")
    tls = {"REDIS_TLS": "true", "REDIS_TLS_CERT_FILE": pem["cert"]}
    with pytest.raises(ConfigError, match=r"^REDIS_TLS_KEY_FILE='.*absent\.key': No such file"):
        AppConfig(environ={**tls, "REDIS_TLS_KEY_FILE": absent})
    with pytest.raises(ConfigError, match=r"not a PEM certificate and its unencrypted private key"):
        AppConfig(environ={**tls, "REDIS_TLS_KEY_FILE": pem["server_key"]})  # another key
    with pytest.raises(ConfigError, match=r"^REDIS_TLS_CA_FILE=.* holds no PEM certificate"):
        AppConfig(environ={"REDIS_TLS": "true", "REDIS_TLS_CA_FILE": pem["key"]})
    with pytest.raises(ConfigError, match=r"ssl_ca_certs of the Redis URL=.*No such file"):
        AppConfig(environ={"REDIS_URL": f"rediss://h/0?ssl_ca_certs={absent}"})


def test_tls_files_need_a_tls_connection(pem: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="REDIS_TLS_CA_FILE is set, but the connection to "):
        AppConfig(environ={"REDIS_TLS_CA_FILE": pem["ca"]})
    with pytest.raises(ConfigError, match="set REDIS_TLS=true or use a rediss:// URL"):
        AppConfig(environ={"REDIS_URL": "redis://h/0", "BULL_REDIS_TLS_CA_FILE": pem["ca"]})
    assert AppConfig(environ={"REDIS_URL": "rediss://h/0", "REDIS_TLS_CA_FILE": pem["ca"]})


def test_sentinel_credentials_go_to_the_sentinels_only() -> None:
    config = AppConfig(
        environ={
            "REDIS_SENTINEL_HOST": "127.0.0.1",
            "REDIS_SENTINEL_USERNAME": "watcher",
            "REDIS_SENTINEL_PASSWORD": "global-sentinel-pw",
            "BULL_REDIS_SENTINEL_PASSWORD": "queues-sentinel-pw",
            "REDIS_PASSWORD": "data-pw",
        }
    )
    settings = config.redis_settings("bull")
    assert (settings.sentinel_username, settings.sentinel_password) == (
        "watcher", "queues-sentinel-pw",
    )  # fmt: skip
    assert config.redis_settings(None).sentinel_password == "global-sentinel-pw"
    pool = bullmq_connection(settings)["connection_pool"]
    sentinel_kwargs = pool.sentinel_manager.sentinel_kwargs
    assert (sentinel_kwargs["username"], sentinel_kwargs["password"]) == (
        "watcher", "queues-sentinel-pw",
    )  # fmt: skip
    assert pool.connection_kwargs["password"] == "data-pw"
    assert pool.connection_kwargs["username"] is None
    shown = repr(config) + repr(settings) + connection_check(settings).message
    for secret in ("global-sentinel-pw", "queues-sentinel-pw", "data-pw"):
        assert secret not in shown
    assert "sentinels: username='watcher', password=***" in shown
