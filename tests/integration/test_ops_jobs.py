"""``bullworker jobs``, ``jobs show`` and ``retry`` as an operator runs them, real processes."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bullworker.core.errors import PayloadError
from bullworker.history.store import JobStore, open_store
from bullworker.producer import check_options
from tests.helpers import bull_queue, eventually, wait_finished
from tests.integration import ops_app
from tests.integration.ops_support import (
    APP,
    bullworker,
    failed_row,
    make_app,
    ok_json,
    row,
    running,
)
from tests.integration.test_recorder import make_recorder
from tests.integration.test_recorder_logs import run_logged

# --------------------------------------------------------------------------- jobs + retry


async def test_what_failed_in_the_last_hour_and_retry_it(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path, store: JobStore
) -> None:
    flag = tmp_path / "fixed"
    app = make_app(prefix, pg_dsn, pg_schema)
    async with running(app):
        done = await app.worker_service.queue_job(ops_app.OpsEcho, {"n": 1})
        bad = await app.worker_service.queue_job(ops_app.OpsFlaky, {"flag": str(flag)})
        old_id = f"ops:{bad}"

        async def both_recorded() -> bool:
            return len(await store.recent(queue="ops")) == 2

        await eventually(both_recorded, timeout=20)

        # What failed in the last hour, and why?
        result = await bullworker(env, "jobs", "--status", "failed", "--since", "1h", "--app", APP)
        assert result.returncode == 0, result.stderr
        header, line = result.stdout.splitlines()
        assert header.split()[:4] == ["ID", "NAME", "STATUS", "ATTEMPT"]
        assert line.startswith(f"{old_id}  OpsFlaky  failed  1")
        assert line.endswith("RuntimeError: flag fixed is missing")
        listed = await ok_json(env, "jobs", "--status", "failed", "--since", "1h")
        assert [j["id"] for j in listed] == [old_id]
        assert listed[0]["error"]["reason"] == "RuntimeError: flag fixed is missing"
        everything = await ok_json(env, "jobs", "--queue", "ops", "--limit", "10")
        assert {j["id"] for j in everything} == {old_id, f"ops:{done}"}
        assert await ok_json(env, "jobs", "--name", "Nope") == []

        shown = await bullworker(env, "jobs", "show", old_id, "--app", APP)
        assert shown.returncode == 0, shown.stderr
        fields = dict(line.split(None, 1) for line in shown.stdout.split("stack:")[0].splitlines())
        assert fields["status"] == "failed"
        assert fields["error"] == "RuntimeError: flag fixed is missing"
        assert json.loads(fields["data"]) == {"flag": str(flag)}
        assert "Traceback" in shown.stdout.split("stack:")[1]
        for label in ("created", "scheduled", "started", "finished", "duration", "wait"):
            assert fields[label] != "-", label
        [detail] = await ok_json(env, "jobs", "show", old_id)
        assert detail["timings"]["duration_ms"] >= 0
        assert detail["timings"]["wait_ms"] >= 0
        assert detail["retryOf"] is None

        # Fix the cause, then retry it: a new job, same name and data, marked as a retry.
        flag.touch()
        result = await bullworker(env, "retry", "--id", old_id, "--app", APP)
        assert result.returncode == 0, result.stderr
        new_id = result.stdout.splitlines()[-1].split()[-1]
        assert new_id.startswith("retry-") and new_id not in (bad, done)

        async def retried() -> bool:
            return bool(await store.get(f"ops:{new_id}"))

        await eventually(retried, timeout=20)
        # Once is enough: the retry is recorded (and gone from Redis); nothing is queued again.
        twice = await ok_json(env, "retry", "--id", old_id)
        assert [(t["newId"], t["retriedAs"]) for t in twice] == [(None, new_id)]
        shown = await bullworker(env, "retry", "--id", old_id, "--dry-run", "--app", APP)
        assert shown.stdout.splitlines()[-1].endswith(f"retried before as {new_id}")
        # --again queues one more, with an id of its own.
        [further] = await ok_json(env, "retry", "--id", old_id, "--again")
        assert further["newId"] not in (None, new_id) and further["retriedAs"] is None

        async def retried_again() -> bool:
            return bool(await store.get(f"ops:{further['newId']}"))

        await eventually(retried_again, timeout=20)
    [again] = await store.get(f"ops:{new_id}")
    assert (again.name, again.status, again.result) == ("OpsFlaky", "completed", "fixed")
    assert again.data == {"flag": str(flag)}
    assert again.retry_of == old_id
    assert [r.queue_id for r in await store.retries_of(old_id)] == [further["newId"], new_id]
    [detail] = await ok_json(env, "jobs", "show", f"ops:{new_id}")
    assert detail["retryOf"] == old_id
    shown = await bullworker(env, "jobs", "show", f"ops:{new_id}", "--app", APP)
    assert f"retry of   {old_id}" in shown.stdout


async def test_jobs_show_finds_jobs_not_recorded_yet(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path
) -> None:
    producer = make_app(prefix, pg_dsn, pg_schema)
    service = producer.worker_service
    later = await service.queue_job(ops_app.OpsEcho, {"n": "later"}, delay=600_000)
    done = await service.queue_job(ops_app.OpsEcho, {"n": "done"})
    flag = str(tmp_path / "missing")
    flaky = await service.queue_job(
        ops_app.OpsFlaky, {"flag": flag}, attempts=2, backoff={"type": "fixed", "delay": 600_000}
    )
    await service.close()

    [waiting] = await ok_json(env, "jobs", "show", f"ops:{later}")
    assert (waiting["status"], waiting["source"]) == ("delayed", "redis")
    assert waiting["data"] == {"n": "later"} and "result" not in waiting
    timings = waiting["timings"]
    assert (timings["started"], timings["finished"], timings["recorded"]) == (None, None, None)
    created = datetime.fromisoformat(timings["created"])
    assert datetime.fromisoformat(timings["scheduled"]) - created == timedelta(minutes=10)

    # Run without recording: finished jobs stay in Redis, the flaky one waits for attempt 2.
    async with running(make_app(prefix, pg_dsn, pg_schema, record_jobs=False)), bull_queue("ops", prefix) as queue:  # fmt: skip
        await wait_finished(queue, done)

        async def first_attempt_failed() -> bool:
            return await queue.getJobState(flaky) == "delayed"

        await eventually(first_attempt_failed)
    [finished] = await ok_json(env, "jobs", "show", f"ops:{done}")
    assert (finished["status"], finished["source"]) == ("completed", "redis")
    assert finished["result"] == {"echo": {"n": "done"}}
    assert finished["timings"]["finished"] is not None
    shown = await bullworker(env, "jobs", "show", f"ops:{flaky}", "--app", APP)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.split("stack:")[0].splitlines()
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines)
    assert fields["status"] == "delayed"
    assert fields["source"] == "redis (not recorded yet)"
    assert fields["attempt"] == "1"
    assert fields["last error"] == "RuntimeError: flag missing is missing"
    assert "result" not in fields

    # Once recorded, the row is what `jobs show` finds.
    store = open_store(pg_dsn, pg_schema=pg_schema)
    async with running(make_app(prefix, pg_dsn, pg_schema)), store:

        async def recorded() -> bool:
            return bool(await store.get(f"ops:{done}"))

        await eventually(recorded, timeout=20)
    [row_detail] = await ok_json(env, "jobs", "show", f"ops:{done}")
    assert (row_detail["status"], row_detail["source"]) == ("completed", "_jobs")
    assert row_detail["timings"]["recorded"] is not None


async def test_jobs_show_prints_progress_and_log_lines(
    prefix: str, env: dict[str, str], store: JobStore
) -> None:
    progress = {"sent": 2, "of": 2}
    [job_id] = await run_logged(prefix, [{"lines": 2, "progress": progress}], queue_name="ops")
    lines = [f"line 0 of {job_id}", f"line 1 of {job_id}"]

    def printed(stdout: str) -> tuple[dict[str, str], list[str]]:
        """The labelled fields and the ``logs:`` section of `jobs show`'s text."""
        head, _, logs = stdout.partition("logs:\n")
        fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in head.splitlines())
        return fields, logs.splitlines()

    for source in ("redis", "_jobs"):  # not recorded yet, then recorded
        if source == "_jobs":
            recorder = make_recorder(prefix, "ops", store)
            try:
                assert await recorder.record_batch() == 1
            finally:
                await recorder.redis.aclose()
        [detail] = await ok_json(env, "jobs", "show", f"ops:{job_id}")
        assert (detail["source"], detail["progress"], detail["logs"]) == (source, progress, lines)
        shown = await bullworker(env, "jobs", "show", f"ops:{job_id}", "--app", APP)
        assert shown.returncode == 0, shown.stderr
        fields, logs = printed(shown.stdout)
        assert json.loads(fields["progress"]) == progress
        assert logs == [f"  {line}" for line in lines]

    # A job that reported nothing shows neither.
    await store.insert_records([row("quiet", age=timedelta(minutes=1))])
    [quiet] = await ok_json(env, "jobs", "show", "ops:quiet")
    assert (quiet["progress"], quiet["logs"]) == (None, [])
    shown = await bullworker(env, "jobs", "show", "ops:quiet", "--app", APP)
    assert "progress" not in shown.stdout and "logs:" not in shown.stdout


async def test_retry_by_filters_and_dry_run(
    prefix: str, env: dict[str, str], store: JobStore
) -> None:
    # Jobs a Node service ran: names this app does not register are retried as they are.
    await store.insert_records(
        [
            failed_row("n1", queue="ops-node", name="NodeOnlyJob"),
            failed_row("n2", queue="ops-node", name="NodeOnlyJob"),
            failed_row("n3", queue="ops-node", name="OtherNodeJob"),
            row("n4", age=timedelta(minutes=1), queue="ops-node", name="NodeOnlyJob"),
            failed_row("old", queue="ops-node", name="NodeOnlyJob", age=timedelta(days=2)),
        ]
    )
    dry = await bullworker(
        env, "retry", "--queue", "ops-node", "--since", "1h", "--dry-run", "--app", APP
    )
    assert dry.returncode == 0, dry.stderr
    assert "WOULD RETRY" in dry.stdout.splitlines()[0]
    assert sorted(line.split()[0] for line in dry.stdout.splitlines()[1:]) == [
        "ops-node:n1", "ops-node:n2", "ops-node:n3"
    ]  # fmt: skip
    planned = await ok_json(env, "retry", "--queue", "ops-node", "--name", "NodeOnlyJob", "--since", "1d", "--dry-run")  # fmt: skip
    assert sorted(p["id"] for p in planned) == ["ops-node:n1", "ops-node:n2"]
    assert all(p["newId"] is None for p in planned)
    async with bull_queue("ops-node", prefix) as queue:
        assert (await queue.getJobCounts("waiting"))["waiting"] == 0

    done = await ok_json(env, "retry", "--queue", "ops-node", "--name", "NodeOnlyJob", "--since", "1d")  # fmt: skip
    assert sorted(d["id"] for d in done) == ["ops-node:n1", "ops-node:n2"]
    async with bull_queue("ops-node", prefix) as queue:
        for item in done:
            job = await queue.getJob(item["newId"])
            assert job.name == "NodeOnlyJob"
            assert job.data == {"n": item["id"].split(":")[1]}
            assert job.opts["retryOf"] == item["id"]

    # Retried already and still in Redis: the same ids, nothing queued twice.
    repeated = await ok_json(env, "retry", "--queue", "ops-node", "--name", "NodeOnlyJob", "--since", "1d")  # fmt: skip
    assert {(r["id"], r["retriedAs"]) for r in repeated} == {(d["id"], d["newId"]) for d in done}
    assert all(r["newId"] is None for r in repeated)
    async with bull_queue("ops-node", prefix) as queue:
        assert (await queue.getJobCounts("waiting"))["waiting"] == 2

    # Retried already and recorded (gone from Redis): found through "retryOf".
    n3 = (await store.get("ops-node:n3"))[0]
    await store.insert_records(
        [
            row("older", age=timedelta(hours=1), queue="ops-node", retry_of="ops-node:n3"),
            row("r3", age=timedelta(minutes=1), queue="ops-node", retry_of="ops-node:n3"),
        ]
    )
    [found] = await ok_json(env, "retry", "--id", "ops-node:n3")
    assert (found["newId"], found["retriedAs"]) == (None, "r3")
    assert n3.completed_at < (await store.get("ops-node:r3"))[0].created_at

    nothing = await bullworker(env, "retry", "--app", APP)
    assert nothing.returncode == 1
    assert "error: choose the failed jobs" in nothing.stderr
    completed = await bullworker(env, "retry", "--id", "ops-node:n4", "--app", APP)
    assert completed.returncode == 1
    assert "did not fail" in completed.stderr


def test_retry_of_is_a_checked_option() -> None:
    assert check_options({"retryOf": "ops:1"}) == {"retryOf": "ops:1"}
    for bad in (1, "", ["ops:1"]):
        with pytest.raises(PayloadError, match="retryOf must be a non-empty string"):
            check_options({"retryOf": bad})


async def test_jobs_command_shape_and_errors(env: dict[str, str]) -> None:
    helped = await bullworker(env, "jobs", "--help")
    assert helped.returncode == 0
    assert "show" in helped.stdout and "--status" in helped.stdout
    empty = await bullworker(env, "jobs", "--app", APP)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == "" and "no recorded jobs match" in empty.stderr
    for args, message in [
        (["jobs", "show", "ops:"], "must be <queue>:<jobId>"),
        (["jobs", "show", "nocolon"], "no job default:nocolon in Redis or in _jobs"),
        (["jobs", "show", "ops:404"], "no job ops:404 in Redis or in _jobs"),
        (["jobs", "--since", "yesterday"], "--since: invalid time 'yesterday'"),
        (["prune", "--older-than", "3x"], "--older-than: invalid duration '3x'"),
    ]:
        result = await bullworker(env, *args, "--app", APP)
        assert result.returncode != 0
        assert result.stderr.splitlines() == [result.stderr.splitlines()[0]]
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    missing = await bullworker(env, "jobs", "show", "--app", APP)
    assert missing.returncode == 2
    assert "Missing argument 'ID'" in missing.stderr
