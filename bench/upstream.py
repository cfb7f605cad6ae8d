"""What a BullMQ-side change would be worth: the fetch-next prototype, 1 and 2 processes.

Raw bullmq workers (no bullworker code) drain the same no-op queue as in the
throughput section: the port as it is, and with bench/fetch_next.py (one script
call fewer per job), each with one and with two worker processes.
"""

from __future__ import annotations

from typing import Any

from bench.common import Plan, median
from bench.throughput import one_run

VARIANTS = (
    ("raw x1", "raw", 1),
    ("raw+fetch-next x1", "raw-fetch-next", 1),
    ("raw x2", "raw", 2),
    ("raw+fetch-next x2", "raw-fetch-next", 2),
)


async def run(plan: Plan, log: Any) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in VARIANTS}
    for repeat in range(plan.repeats):
        for label, kind, processes in VARIANTS:
            figures = await one_run(
                label.split()[0], kind, "noop", plan, record=False, schema=None, processes=processes
            )
            runs[label].append(figures)
            log(
                f"  #{repeat + 1} {label:18} {figures['jobs_per_s']:8.0f} jobs/s"
                f"  cpu {figures['worker_cpu_ms_per_job']:.3f} ms/job,"
                f" redis {figures['redis_cpu_ms_per_job']:.3f} ms/job"
            )

    def paired(top: str, bottom: str) -> float:
        pairs = zip(runs[top], runs[bottom], strict=True)
        return round(median([a["jobs_per_s"] / b["jobs_per_s"] for a, b in pairs]), 3)

    result: dict[str, Any] = {"jobs_per_run": plan.jobs, "repeats": plan.repeats}
    for label, values in runs.items():
        result[label] = {
            "jobs_per_s": round(median([v["jobs_per_s"] for v in values]), 1),
            "worker_cpu_ms_per_job": round(median([v["worker_cpu_ms_per_job"] for v in values]), 3),
            "redis_cpu_ms_per_job": round(median([v["redis_cpu_ms_per_job"] for v in values]), 3),
            "runs": values,
        }
    result["ratios"] = {
        "fetch-next/raw, 1 process": paired("raw+fetch-next x1", "raw x1"),
        "raw, 2 processes / 1": paired("raw x2", "raw x1"),
        "fetch-next, 2 processes / 1": paired("raw+fetch-next x2", "raw+fetch-next x1"),
    }
    return result
