"""Security basics: Redis password/ACL user, TLS and client certificates, no credentials in
output, no SQL injection."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bullworker import AppConfig, ConfigError, create_app
from bullworker.history.store import open_store
from tests.conftest import REDIS_URL
from tests.faults import fault_app
from tests.faults.report import Scenario
from tests.faults.servers import RedisServer
from tests.faults.workload import (
    APP,
    ExecLog,
    Proc,
    base_env,
    dup_rows,
    run_cli,
    store_rows,
    until,
    with_store,
)
from tests.helpers import bull_queue
from tests.proxy import TcpProxy

GROUP = "Security"
DEFAULT_PASSWORD = "default-pw-4f1c"
ALICE_PASSWORD = "alice-pw-93ab"
PG_PASSWORD = "pg-pw-7d2e"
EVIL = '\'); DROP TABLE "_jobs"; --'


async def _count_is(store: Any, n: int) -> bool:
    return bool(await store.count() == n)


async def test_password_acl_user_and_no_secret_in_logs(
    scenario: Scenario,
    redis_servers: Callable[..., RedisServer],
    prefix: str,
    pg_dsn: str,
    pg_schema: str,
    exec_log: ExecLog,
    tmp_path: Path,
) -> None:
    """Redis password and ACL user; no credential in any output."""
    acl = ["alice", "on", f">{ALICE_PASSWORD}", f"~{prefix}:*", "&*", "+@all"]
    redis = redis_servers(["--requirepass", DEFAULT_PASSWORD, "--user", *acl,
                           "--appendonly", "yes", "--appendfsync", "always"])  # fmt: skip
    scenario.injected = "requirepass + ACL user limited to the prefix; Redis and PG cut meanwhile"
    proxy = TcpProxy("127.0.0.1", int(pg_dsn.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    database_url = f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{proxy.port}/test"
    env = base_env(
        prefix, REDIS_URL=f"redis://alice:{ALICE_PASSWORD}@127.0.0.1:{redis.port}/0",
        DATABASE_URL=database_url, DATABASE_SCHEMA=pg_schema, FAULT_EXEC_LOG=str(exec_log.path),
        RECORDER_SWEEP_INTERVAL="1", LEADER_TTL="3", REDIS_TIMEOUT="2",
    )  # fmt: skip
    scenario.settings = {"REDIS_URL": "redis://alice:***@.../0", "DATABASE_URL": "...:***@..."}
    runner = Proc.runner(env, tmp_path / "runner.log", "--log-level", "DEBUG")
    producer_env = base_env(prefix, REDIS_PORT=str(redis.port), REDIS_PASSWORD=DEFAULT_PASSWORD)
    config = AppConfig(
        environ={}, redis_port=redis.port, redis_username="alice",
        redis_password=ALICE_PASSWORD, bull_prefix=prefix, app_env="production",
    )  # fmt: skip
    producer = create_app(config=config, registry=fault_app.registry)
    store = await with_store(pg_dsn, schema=pg_schema)
    outputs: list[str] = []
    try:
        await producer.worker_service.queue_jobs(fault_app.FaultJob, [{"n": n} for n in range(10)])
        for n in range(10, 13):  # the CLI, as the default user with REDIS_PASSWORD
            result = run_cli(
                ["queue", "FaultJob", "--data", f'{{"n": {n}}}', "--app", APP], producer_env
            )
            outputs.append(result.stdout + result.stderr)
            assert result.returncode == 0, result.stderr
        wrong = run_cli(["queue", "FaultJob", "--app", APP],
                        {**producer_env, "REDIS_PASSWORD": "wrong-" + DEFAULT_PASSWORD})  # fmt: skip
        outputs.append(wrong.stdout + wrong.stderr)
        await until(lambda: set(range(13)) <= exec_log.done(), 20, "jobs ran")
        await proxy.cut()  # the recorder logs database errors (with the URL, password hidden)
        redis.kill()  # the runner logs connection errors
        await asyncio.sleep(2.0)
        redis.start()
        await producer.worker_service.queue_jobs(
            fault_app.FaultJob, [{"n": n} for n in range(13, 20)]
        )
        await asyncio.sleep(2.0)
        await proxy.restore()
        await until(lambda: set(range(20)) <= exec_log.done(), 30, "jobs ran after the outage")
        await until(lambda: _count_is(store, 20), 40, "every job recorded")
        rows = await store_rows(store)
    finally:
        runner.signal(signal.SIGTERM)
        await runner.wait(20)
        outputs.append(runner.output())
        runner.close()
        await producer.stop()
        await store.close()
        await proxy.cut()
    log = "\n".join(outputs)
    scenario.figures(
        sent=20, completed=len(exec_log.done()), recorded=len(rows),
        dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
    )  # fmt: skip
    errors = [line for line in log.splitlines() if " ERROR " in line or "error:" in line]
    wrong_line = wrong.stderr.strip().splitlines()[-1]
    scenario.explanation = (
        f"A redis-server with `requirepass` and an ACL user `alice` allowed only the keys "
        "`<prefix>:*` (so every key bullworker touches stays under its prefix): the runner "
        "connected as alice through REDIS_URL, producers as alice (REDIS_USERNAME/"
        "REDIS_PASSWORD) and as the default user (`bullworker queue` with REDIS_PASSWORD). "
        "A wrong password failed at once: "
        f"`{wrong_line}`. Then Redis was killed for 2 s and PostgreSQL cut for 4 s, so that "
        f"the runner (at DEBUG level) logged {len(errors)} error lines; none of the three "
        "passwords appears in any output. Everything was run and recorded once."
    )
    assert "AuthenticationError" in wrong_line and wrong.returncode != 0
    assert errors, "the outages should have been logged"
    for secret in (DEFAULT_PASSWORD, ALICE_PASSWORD, PG_PASSWORD):
        assert secret not in log
    assert dup_rows(rows) == 0 and {r.data["n"] for r in rows} == set(range(20))


async def test_tls(
    scenario: Scenario,
    redis_servers: Callable[..., RedisServer],
    tls_certs: tuple[Path, Path, Path],
    prefix: str,
    exec_log: ExecLog,
    tmp_path: Path,
) -> None:
    """TLS (rediss://)."""
    ca, cert, key = tls_certs
    redis = redis_servers(
        ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
         "--tls-auth-clients", "no"], tls_ca=ca,
    )  # fmt: skip
    scenario.injected = "redis-server with only a TLS port (openssl CA and certificate)"
    url = f"rediss://127.0.0.1:{redis.port}/0?ssl_ca_certs={ca}"
    scenario.settings = {"REDIS_URL": "rediss://127.0.0.1:<port>/0?ssl_ca_certs=<ca>"}
    config = AppConfig(
        environ={}, redis_url=url, bull_prefix=prefix, app_env="production",
        sqlite_path=str(tmp_path / "jobs.sqlite3"), recorder_sweep_interval=1.0,
    )  # fmt: skip
    app = create_app(config=config, enable_worker=True, registry=fault_app.registry)
    await app.start(run_worker=True)
    store = await with_store(None, sqlite_path=config.sqlite_path)
    try:
        await app.worker_service.queue_jobs(fault_app.FaultJob, [{"n": n} for n in range(10)])
        # REDIS_TLS=true with host and port: the CA comes from the default trust store.
        tls_env = base_env(prefix, REDIS_PORT=str(redis.port), REDIS_TLS="true",
                           SSL_CERT_FILE=str(ca))  # fmt: skip
        cli = run_cli(["queue", "FaultJob", "--data", '{"n": 10}', "--app", APP], tls_env)
        untrusted = run_cli(["queue", "FaultJob", "--app", APP],
                            {**tls_env, "SSL_CERT_FILE": str(cert), "REDIS_TIMEOUT": "2"})  # fmt: skip
        await until(lambda: set(range(11)) <= exec_log.done(), 20, "jobs ran over TLS")
        await until(lambda: _count_is(store, 11), 20, "every job recorded")
        rows = await store_rows(store)
    finally:
        await app.stop(grace=1)
        await store.close()
    scenario.figures(
        sent=11, completed=len(exec_log.done()), recorded=len(rows),
        dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
    )  # fmt: skip
    refusal = untrusted.stderr.strip().splitlines()[-1] if untrusted.stderr.strip() else ""
    scenario.explanation = (
        "This redis-server build supports TLS. A server with only a TLS port (client "
        "certificates not required) served a runner, its recorder and producers over "
        "`rediss://` with the CA given as `ssl_ca_certs`, and a `bullworker queue` with "
        "REDIS_TLS=true that trusts the CA through SSL_CERT_FILE. A client that does not trust "
        f"the certificate is refused at once: `{refusal}`."
    )
    assert cli.returncode == 0, cli.stderr
    assert untrusted.returncode != 0 and refusal.startswith("error: ")
    assert "CERTIFICATE_VERIFY_FAILED" in refusal
    assert dup_rows(rows) == 0 and len(rows) == 11


def _timed_cli(args: list[str], env: dict[str, str]) -> tuple[str, int, float]:
    """The last line of stderr, the exit code and the seconds of a ``bullworker`` command."""
    started = time.monotonic()
    result = run_cli(args, env)
    lines = result.stderr.strip().splitlines()
    return (lines[-1] if lines else ""), result.returncode, time.monotonic() - started


async def test_tls_client_certificates(
    scenario: Scenario,
    redis_servers: Callable[..., RedisServer],
    tls_certs: tuple[Path, Path, Path],
    tls_client_cert: tuple[Path, Path],
    prefix: str,
    exec_log: ExecLog,
    tmp_path: Path,
) -> None:
    """Mutual TLS: the server requires client certificates."""
    ca, cert, key = tls_certs
    client_cert, client_key = tls_client_cert
    redis = redis_servers(
        ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
         "--tls-auth-clients", "yes"], tls_ca=ca, tls_client=tls_client_cert,
    )  # fmt: skip
    scenario.injected = (
        "`--tls-auth-clients yes`; clients without a certificate or with a missing key"
    )
    files = {"REDIS_TLS_CA_FILE": str(ca), "REDIS_TLS_CERT_FILE": str(client_cert),
             "REDIS_TLS_KEY_FILE": str(client_key)}  # fmt: skip
    scenario.settings = {"REDIS_TLS": "true", **{name: "<file>" for name in files}}
    sqlite_path = str(tmp_path / "jobs.sqlite3")
    env = base_env(
        prefix, REDIS_PORT=str(redis.port), REDIS_TLS="true", REDIS_TIMEOUT="2",
        SQLITE_PATH=sqlite_path, RECORDER_SWEEP_INTERVAL="1", **files,
    )  # fmt: skip
    runner = Proc.runner(env, tmp_path / "runner.log")
    # The producer sets the queues' keys (BULL_REDIS_*), the CLI a rediss:// URL's query.
    scoped = {f"BULL_{name}": value for name, value in files.items()}
    config = AppConfig(
        environ={"REDIS_PORT": str(redis.port), "BULL_REDIS_TLS": "true", **scoped},
        bull_prefix=prefix, app_env="production",
    )  # fmt: skip
    producer = create_app(config=config, registry=fault_app.registry)
    url = (f"rediss://127.0.0.1:{redis.port}/0?ssl_ca_certs={ca}"
           f"&ssl_certfile={client_cert}&ssl_keyfile={client_key}")  # fmt: skip
    no_cert = {
        k: v for k, v in env.items() if k not in ("REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE")
    }
    no_key = {**env, "REDIS_TLS_KEY_FILE": str(tmp_path / "absent.key")}
    store = await with_store(None, sqlite_path=sqlite_path)
    try:
        await producer.worker_service.queue_jobs(fault_app.FaultJob, [{"n": n} for n in range(10)])
        queue = ["queue", "FaultJob", "--app", APP]
        cli, refused, missing, start = await asyncio.gather(
            asyncio.to_thread(_timed_cli, [*queue, "--data", '{"n": 10}'],
                              {**base_env(prefix), "REDIS_URL": url}),
            asyncio.to_thread(_timed_cli, queue, no_cert),
            asyncio.to_thread(_timed_cli, queue, no_key),
            asyncio.to_thread(_timed_cli, ["start", "--app", APP], no_cert),
        )  # fmt: skip
        await until(lambda: set(range(11)) <= exec_log.done(), 20, "jobs ran over mutual TLS")
        await until(lambda: _count_is(store, 11), 20, "every job recorded")
        rows = await store_rows(store)
    finally:
        runner.signal(signal.SIGTERM)
        await runner.wait(20)
        runner.close()
        await producer.stop()
        await store.close()
    scenario.figures(
        sent=11, completed=len(exec_log.done()), recorded=len(rows),
        dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
    )  # fmt: skip
    scenario.explanation = (
        "A server with only a TLS port that requires client certificates signed by its CA. "
        "A runner (REDIS_TLS_CA_FILE, REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE), its recorder, "
        "a producer with the queues' BULL_REDIS_TLS_* keys and a `bullworker queue` with "
        "`ssl_certfile`/`ssl_keyfile` in a `rediss://` URL all connected; every job ran and was "
        "recorded once. Without a client certificate (REDIS_TIMEOUT=2) `bullworker queue` "
        f"failed in {refused[2]:.1f} s: `{refused[0]}`, and `bullworker start` in "
        f"{start[2]:.1f} s: `{start[0]}`. A key file that does not exist stops a command before "
        f"any connection: `{missing[0].replace(str(tmp_path), '<tmp>')}`."
    )
    assert cli[1] == 0, cli[0]
    assert refused[1] != 0 and refused[0].startswith("error: ")
    assert "CERTIFICATE_REQUIRED" in refused[0] and refused[2] < 8.0
    assert start[1] != 0 and "CERTIFICATE_REQUIRED" in start[0] and start[2] < 8.0
    assert missing[1] == 4 and missing[0].startswith("error: ")  # configuration
    assert "REDIS_TLS_KEY_FILE=" in missing[0] and "No such file" in missing[0]
    assert dup_rows(rows) == 0 and {r.data["n"] for r in rows} == set(range(11))


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_sql_in_payload_and_names_is_stored_verbatim(
    scenario: Scenario, database: str, prefix: str, pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    """SQL in payload, job name and job id is stored verbatim."""
    scenario.title += f" ({database})"
    scenario.injected = f"data, job name and jobId `{EVIL}`"
    url = pg_dsn if database == "postgres" else None
    config = AppConfig(
        environ={}, redis_url=REDIS_URL, bull_prefix=prefix, app_env="production",
        database_url=url, database_schema=pg_schema if url else None,
        sqlite_path=str(tmp_path / "jobs.sqlite3"), recorder_sweep_interval=1.0,
    )  # fmt: skip
    app = create_app(config=config, enable_worker=True, registry=fault_app.registry)
    await app.start(run_worker=True)
    store = await with_store(url, sqlite_path=config.sqlite_path, schema=config.database_schema)
    try:
        ok = await app.worker_service.queue_job(
            fault_app.FaultJob, {"n": 1, "pad": EVIL}, jobId=EVIL.replace(":", "")
        )
        async with bull_queue("default", prefix) as queue:
            unknown = (await queue.add(EVIL, {"pad": EVIL}, {})).id
        await app.worker_service.queue_job(fault_app.FaultJob, {"n": 2})
        await until(lambda: _count_is(store, 3), 20, "3 rows")
        rows = await store_rows(store)
        [good] = await store.get(f"default:{ok}")
        [bad] = await store.get(f"default:{unknown}")
    finally:
        await app.stop(grace=1)
        await store.close()
    scenario.figures(sent=3, completed=3, recorded=len(rows), dup_rows=dup_rows(rows))
    scenario.explanation = (
        "Every value goes to the database as a query parameter; the table name is a constant "
        "and the schema a checked, quoted identifier. The rows hold the text as it was sent "
        f"(`queueId`, `name`, `data`), the table is intact and still has all {len(rows)} rows."
    )
    assert (good.queue_id, good.data["pad"]) == (EVIL, EVIL)
    assert (bad.name, bad.data["pad"], bad.status) == (EVIL, EVIL, "failed")


def test_database_schema_is_not_injectable(scenario: Scenario, prefix: str) -> None:
    """DATABASE_SCHEMA with quotes and semicolons is rejected."""
    evil = 'x"; DROP TABLE "_jobs"; --'
    scenario.injected = f"DATABASE_SCHEMA=`{evil}`"
    with pytest.raises(ConfigError, match="is not a plain identifier"):
        AppConfig(environ={"DATABASE_SCHEMA": evil})
    with pytest.raises(ValueError, match="invalid PostgreSQL schema name"):
        open_store("postgresql://postgres@127.0.0.1/test", pg_schema=evil)
    result = run_cli(["start", "--app", APP], base_env(prefix, DATABASE_SCHEMA=evil))
    line = result.stderr.strip().splitlines()[-1]
    scenario.explanation = (
        f"Rejected when the config is read (before any connection), in one line: `{line}`. "
        "The store refuses such a name too. The table name `_jobs` is a constant, not a setting."
    )
    assert result.returncode == 4 and "Traceback" not in result.stderr  # configuration
    assert line.startswith("error: ") and "DATABASE_SCHEMA=" in line
