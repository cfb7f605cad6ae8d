"""An app whose job has an impossible cron pattern: importing it must fail clearly."""

from __future__ import annotations

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

registry = JobRegistry()


@worker_job(registry=registry)
class NightlyReportJob(BaseJob[dict[str, int], None]):
    CRON_SCHEDULE = "0 25 * * *"  # hour 25

    async def handle(self, data: dict[str, int]) -> None: ...


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
