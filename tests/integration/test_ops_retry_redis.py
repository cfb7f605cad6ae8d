"""``bullworker retry`` finds failed jobs that are still in Redis, not (yet) in ``_jobs``."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import bull_queue, wait_finished
from tests.integration import ops_app
from tests.integration.ops_support import APP, bullworker, make_app, ok_json, running


async def test_retry_without_recording_finds_the_failure_in_redis(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "RECORD_JOBS": "false"}
    flag = tmp_path / "fixed"
    app = make_app(prefix, pg_dsn, pg_schema, record_jobs=False)
    async with running(app), bull_queue("ops", prefix) as queue:
        bad = await app.worker_service.queue_job(ops_app.OpsFlaky, {"flag": str(flag)})
        other = await app.worker_service.queue_job(ops_app.OpsFlaky, {"flag": str(flag)})
        for job_id in (bad, other):
            assert (await wait_finished(queue, job_id)).failedReason

        # `_jobs` is empty: the filters read Redis's failed sets.
        planned = await ok_json(env, "retry", "--queue", "ops", "--dry-run")
        assert sorted(p["id"] for p in planned) == sorted([f"ops:{bad}", f"ops:{other}"])
        assert {p["reason"] for p in planned} == {"RuntimeError: flag fixed is missing"}

        flag.touch()
        [done] = await ok_json(env, "retry", "--id", f"ops:{bad}")
        assert done["newId"].startswith("retry-") and done["retriedAs"] is None
        rerun = await wait_finished(queue, done["newId"])
        assert (rerun.returnvalue, rerun.opts["retryOf"]) == ("fixed", f"ops:{bad}")
        # Still once: the retry is found in Redis by its id.
        [again] = await ok_json(env, "retry", "--id", f"ops:{bad}")
        assert (again["newId"], again["retriedAs"]) == (None, done["newId"])

    missing = await bullworker(env, "retry", "--id", "ops:404", "--app", APP)
    assert missing.returncode == 1
    assert "no failed job ops:404 in _jobs or in Redis" in missing.stderr
    listed = await bullworker(env, "jobs", "--app", APP)
    assert listed.returncode == 0 and listed.stdout == ""
    assert "RECORD_JOBS is false, so nothing is recorded" in listed.stderr
